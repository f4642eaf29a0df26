package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", d, what())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func httpGet(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTapCommandNATSDownAtStart runs `shadowcube tap` against a NATS URL
// where nothing listens yet: the tap answers 100% of requests, /readyz is
// ready, shadowcube_tap_capture_up is 0; once an embedded NATS starts on
// that port the tap captures, and its log holds no upstream password. On the
// old code the command exited 1 at start ("connect to NATS at ...").
func TestTapCommandNATSDownAtStart(t *testing.T) {
	if os.Getenv("SHADOWCUBE_TEST_NATS_URL") != "" {
		t.Skip("needs an embedded NATS it can stop and start (SHADOWCUBE_TEST_NATS_URL is set)")
	}
	n := testenv.StartNATS(t)
	natsURL := n.URL
	n.Shutdown()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "legacy %s %s", r.URL.Path, b)
	}))
	defer up.Close()
	listen, metrics := freeAddr(t), freeAddr(t)
	for k, v := range map[string]string{
		"SHADOWCUBE_NATS_URL": natsURL, "SHADOWCUBE_TAP_UPSTREAM": strings.Replace(up.URL, "http://", "http://ops:UPSTREAM-PASSWORD@", 1),
		"SHADOWCUBE_TAP_SERVICE": "saju", "SHADOWCUBE_USER_KEY_SECRET": "tap-command-test-secret-0123456789abcdef",
		"SHADOWCUBE_TAP_LISTEN": listen, "SHADOWCUBE_METRICS_ADDR": metrics, "SHADOWCUBE_TAP_ECHO_ID": "true",
		"SHADOWCUBE_LOG_LEVEL": "debug",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testenv.Buffer
	var wg sync.WaitGroup
	code := -1
	wg.Add(1)
	go func() {
		defer wg.Done()
		code = run(ctx, []string{"tap"}, &out, &errb)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	defer stop()
	base := "http://" + listen
	waitUntil(t, 30*time.Second, func() bool { c, _ := httpGet(base + "/ping"); return c == 200 },
		func() string { return "tap not answering; log:\n" + errb.String() })
	ids := map[string]bool{}
	send := func(k int) {
		t.Helper()
		for i := 0; i < k; i++ {
			resp, err := http.Post(fmt.Sprintf("%s/p/%d", base, i), "text/plain", strings.NewReader("hi"))
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("legacy /p/%d hi", i); resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, b, want)
			}
			id := resp.Header.Get("X-Shadowcube-Capture-Id")
			if id == "" {
				t.Fatalf("request %d: no capture id echoed", i)
			}
			ids[id] = true
		}
	}
	send(40)
	if c, body := httpGet("http://" + metrics + "/readyz"); c != 200 {
		t.Errorf("/readyz = %d %s while NATS is down; want ready (proxying works)", c, body)
	}
	if _, m := httpGet("http://" + metrics + "/metrics"); !strings.Contains(m, "\nshadowcube_tap_capture_up 0\n") {
		t.Errorf("capture_up is not 0 while NATS is down")
	}
	waitUntil(t, 30*time.Second, func() bool { return strings.Contains(errb.String(), "capture down") },
		func() string { return "no capture-down log line" })

	n.Start(t)
	waitUntil(t, 60*time.Second, func() bool {
		_, m := httpGet("http://" + metrics + "/metrics")
		return strings.Contains(m, "\nshadowcube_tap_capture_up 1\n")
	}, func() string { return "capture never came up; log:\n" + errb.String() })
	ids = map[string]bool{}
	send(30)
	_, js := n.Connect(t)
	got := map[string]bool{}
	waitUntil(t, 60*time.Second, func() bool {
		s, err := js.Stream(context.Background(), schemas.StreamLegacyRequests)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		if err != nil || info.State.Msgs < 30 {
			return false
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(context.Background(), seq)
			if err != nil {
				continue
			}
			ev, err := schemas.DecodeRequestEvent(m.Data)
			if err == nil {
				got[ev.ID] = true
			}
		}
		return len(got) >= 30
	}, func() string {
		_, m := httpGet("http://" + metrics + "/metrics")
		return fmt.Sprintf("%d events captured after NATS started; log:\n%s\n%s", len(got), errb.String(), m)
	})
	for id := range ids {
		if !got[id] {
			t.Errorf("echoed capture id %s is not in LEGACY_REQUESTS", id)
		}
	}
	stop()
	if code != 0 {
		t.Errorf("tap exit %d; stderr:\n%s", code, errb.String())
	}
	if strings.Contains(errb.String(), "UPSTREAM-PASSWORD") {
		t.Errorf("log discloses the upstream password:\n%s", errb.String())
	}
}
