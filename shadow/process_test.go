package shadow

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// The real binary, killed with SIGKILL in the middle of a backlog and
// started again: every request ends with exactly one stored result (a crash
// may replay a request twice, never lose one), and the env/flag wiring of
// `shadowcube shadow` works.
func TestBinaryKill9NoLoss(t *testing.T) {
	bin := testenv.Binary(t)
	h := newHarness(t)
	cube := newCube(t, "cube")
	var mu sync.Mutex
	seen := 0
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		seen++
		mu.Unlock()
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	})
	dir := t.TempDir()
	routesFile := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesFile, []byte(fmt.Sprintf(`
services:
  - name: saju
    cube_url: %s
    concurrency: 4
    credentials: {kind: bearer, token_env: SAJU_CUBE_TOKEN}
    routes:
      - route: /api/saju/chart/{id}
`, cube.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 300
	var evs []schemas.RequestEvent
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("k-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...)

	start := func() (*exec.Cmd, *testenv.Buffer) {
		cmd := exec.Command(bin, "shadow", "--routes", routesFile, "--max-in-flight", "16")
		cmd.Env = append(os.Environ(),
			"SHADOWCUBE_NATS_URL="+h.nats.URL,
			"SHADOWCUBE_METRICS_ADDR=",
			"SHADOWCUBE_SHADOW_DURABLE=kill9",
			"SAJU_CUBE_TOKEN=svc-token",
			// A killed process's messages come back after AckWait: keep it short.
			"SHADOWCUBE_SHADOW_ACK_WAIT=3s",
		)
		out := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	first, out := start()
	eventually(t, 30*time.Second, func() error {
		if c := h.resultCount(); c < n/4 {
			return fmt.Errorf("%d results so far (process output: %s)", c, out)
		}
		return nil
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	if c := h.resultCount(); c >= n {
		t.Fatalf("all %d results stored before the kill; the test proves nothing", c)
	}

	second, out2 := start()
	res := h.results(n) // fails on a result stored twice
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("graceful stop: %v\n%s", err, out2)
	}
	h.settled()
	if len(res) != n {
		t.Fatalf("%d distinct results, want %d", len(res), n)
	}
	for i := range n {
		r, ok := res[fmt.Sprintf("k-%d", i)]
		if !ok || r.Cube == nil || r.Cube.Status != 200 {
			t.Errorf("k-%d: %+v", i, r)
		}
	}
	for _, s := range cube.requests() {
		if s.Header.Get("Authorization") != "Bearer svc-token" {
			t.Fatalf("credentials from the environment not used: %q", s.Header.Get("Authorization"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if seen < n || seen > n+16+8 { // at most the killed process's in-flight work is redone
		t.Errorf("cube answered %d replays for %d requests", seen, n)
	}
}
