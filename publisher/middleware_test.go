package publisher

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestMiddlewareCapture: the middleware leaves the answer untouched
// (status, headers, streamed body) and captures it like the tap.
func TestMiddlewareCapture(t *testing.T) {
	e := newEnv(t, Config{Routes: testService(t), MaxBody: 16, Privacy: PrivacyConfig{AllowHeaders: []string{"X-Echo"}}})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", "1")
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("part1-"))
		http.NewResponseController(w).Flush()
		w.Write(bytes.ToUpper(b))
	})
	srv := httptest.NewServer(Middleware(e.c)(h))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/api/saju/chart?x=1", strings.NewReader("hello world, long enough to truncate"))
	req.Header.Set("X-User-Id", "mw-user")
	req.Header.Set("Traceparent", "00-11111111111111111111111111111111-2222222222222222-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 || resp.Header.Get("X-Echo") != "1" || string(body) != "part1-HELLO WORLD, LONG ENOUGH TO TRUNCATE" {
		t.Fatalf("answer changed: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	e.flush(t)
	evs := events(t, e.js)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	if ev.Source != schemas.SourceMiddleware || ev.Route != "/api/saju/chart" || ev.Query != "x=1" || ev.Response.Status != 202 ||
		string(ev.Body) != "hello world, lon" || !ev.BodyTruncated || string(ev.Response.Body) != "part1-HELLO WORL" ||
		!ev.Response.BodyTruncated || ev.UserKey != e.c.UserKey("mw-user") || ev.TraceParent == "" || ev.Response.Headers.Get("X-Echo") != "1" {
		t.Fatalf("event: %+v", ev)
	}
}

// TestCloseLeavesNoGoroutines: Capturer, Tap and FlagWatcher stop every
// goroutine they started.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t, Config{})
	e.c.Close()
	ctx := testenv.Context(t, 10*time.Second)
	flags, err := OpenFlags(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	time.Sleep(50 * time.Millisecond)
	defer testenv.VerifyNone(t, goleak.IgnoreCurrent())

	c, err := New(Config{Service: "saju", Privacy: PrivacyConfig{Secret: []byte(testSecret)}, Spill: SpillConfig{Dir: t.TempDir()}}, Deps{Conn: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	runCapturer(t, c)
	w, err := WatchFlag(ctx, flags.KV(), "saju", nil)
	if err != nil {
		t.Fatal(err)
	}
	tap, err := NewTap(c, TapConfig{Upstream: up.URL, Cube: up.URL, Rollout: w})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tap)
	client := &http.Client{Transport: &http.Transport{}}
	for i := 0; i < 20; i++ {
		resp, err := client.Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	srv.Close()
	tap.Close()
	tap.Close()
	w.Close()
	c.Close()
	c.Close()
	up.CloseClientConnections()
}

// TestSpillDirectoryGuards: the spill refuses a symlinked directory or file
// and a directory another capturer holds. On the old code all three opened.
func TestSpillDirectoryGuards(t *testing.T) {
	open := func(dir string) error {
		// Run opens the spill file first; openSpill is that step.
		sp, err := openSpill(SpillConfig{Dir: dir}, slog.New(slog.DiscardHandler))
		if err == nil {
			t.Cleanup(sp.close)
		}
		return err
	}
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := open(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlinked directory: %v", err)
	}
	fdir := t.TempDir()
	if err := os.Symlink(filepath.Join(real, "elsewhere"), filepath.Join(fdir, "spill.log")); err != nil {
		t.Fatal(err)
	}
	if err := open(fdir); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlinked spill file: %v", err)
	}
	shared := t.TempDir()
	if err := open(shared); err != nil {
		t.Fatal(err)
	}
	if err := open(shared); err == nil || !strings.Contains(err.Error(), "in use by another tap") {
		t.Errorf("second capturer on one spill directory: %v", err)
	}
}
