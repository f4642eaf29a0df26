package publisher

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
)

// TestTapStartsWithNATSDown: a tap whose capturer starts with NATS down
// answers every request, counts the drops (or spills them), keeps trying
// to connect, and captures once NATS starts on its known port (with the
// spill re-published). On the old code New refused a nil connection and
// `tap` exited 1 when NATS was unreachable at start.
func TestTapStartsWithNATSDown(t *testing.T) {
	for _, withSpill := range []bool{false, true} {
		t.Run(fmt.Sprintf("spill=%v", withSpill), func(t *testing.T) {
			n := testenv.StartNATS(t)
			if os.Getenv("SHADOWCUBE_TEST_NATS_URL") != "" {
				t.Skip("needs an embedded NATS it can stop and start (SHADOWCUBE_TEST_NATS_URL is set)")
			}
			url := n.URL
			n.Shutdown()

			cfg := Config{Service: "saju", Routes: testService(t), AckTimeout: 2 * time.Second, Privacy: PrivacyConfig{Secret: []byte(testSecret)}}
			if withSpill {
				cfg.Spill = SpillConfig{Dir: t.TempDir()}
			}
			c, err := New(cfg, Deps{Logger: testenv.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			runCapturer(t, c)
			up := httptest.NewServer(legacyHandler(nil))
			defer up.Close()
			tap, err := NewTap(c, TapConfig{Upstream: up.URL})
			if err != nil {
				t.Fatal(err)
			}
			defer tap.Close()
			srv := httptest.NewServer(tap)
			defer srv.Close()
			send := func(n int) {
				t.Helper()
				for i := 0; i < n; i++ {
					body := []byte(fmt.Sprintf(`{"n":%d}`, i))
					resp, err := http.Post(srv.URL+"/api/saju/chart", "application/json", bytes.NewReader(body))
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated || !bytes.Equal(got, bytes.ToUpper(body)) {
						t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
					}
				}
			}

			var attempts atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var loopErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				loopErr = c.ConnectLoop(ctx, func(ctx context.Context) (*nats.Conn, error) {
					attempts.Add(1)
					nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
					if err != nil {
						return nil, err
					}
					js, _ := jetstream.New(nc)
					if err := EnsureStream(ctx, js, natsx.StreamSettings{}); err != nil {
						nc.Close()
						return nil, err
					}
					return nc, nil
				})
			}()
			defer func() { cancel(); wg.Wait() }()

			const down = 100
			send(down)
			waitFor(t, 30*time.Second, func() bool { return attempts.Load() >= 2 }, func() string { return "the loop did not retry" })
			if c.Connected() || c.up() != 0 {
				t.Fatal("capture reported up while NATS is down")
			}
			if err := c.Flush(testenv.Context(t, 20*time.Second)); err != nil {
				t.Fatal(err)
			}
			st := c.Stats()
			if withSpill && st.Spilled != down {
				t.Fatalf("spilled %d of %d captures made while NATS was down: %+v", st.Spilled, down, st)
			}
			if !withSpill && (st.Dropped != down || counterValue(c.m.dropped(DropNATS)) != down) {
				t.Fatalf("dropped %d (nats_unavailable %v), want %d: %+v", st.Dropped, counterValue(c.m.dropped(DropNATS)), down, st)
			}

			n.Start(t) // same port
			waitFor(t, 60*time.Second, c.Connected, func() string { return fmt.Sprintf("not attached after %d attempts", attempts.Load()) })
			const after = 50
			send(after)
			want := after
			if withSpill {
				want += down
			}
			_, js := n.Connect(t)
			var got int
			waitFor(t, 60*time.Second, func() bool {
				got = len(messages(t, js))
				return got >= want
			}, func() string { return fmt.Sprintf("%d events in the stream, want %d", got, want) })
			if got != want {
				t.Errorf("%d events, want %d", got, want)
			}
			if c.up() != 1 {
				t.Error("capture_up is not 1 once attached")
			}
			cancel()
			wg.Wait()
			if loopErr != nil {
				t.Errorf("connect loop: %v", loopErr)
			}
		})
	}
}
