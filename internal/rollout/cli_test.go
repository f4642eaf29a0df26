package rollout

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRolloutCommands runs the real `shadowcube rollout status` and
// `rollout rollback` against a two-way set-up with the saju tap at 25%
// under traffic: status shows the rollout, rollback prints each step and
// exits 0; with reverse sync stopped the drill fails at its bounded wait and
// exits 1.
func TestRolloutCommands(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.startAll()
	s := w.startSaju()
	if _, err := s.flags.Set(w.ctx, "saju", 25); err != nil {
		t.Fatal(err)
	}
	w.waitFor(30*time.Second, "the tap at 25%", func() bool { return s.watcher.Percent() == 25 })
	tr := s.startTraffic(10 * time.Millisecond)
	defer tr.end()
	w.waitFor(2*time.Minute, "cube charts in legacy", func() bool {
		return w.count(w.legacy, `SELECT count(*) FROM saju_records WHERE id >= 1000000000000`) >= 3
	})
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(w.bin, append(args, "--service", "saju", "--forward", w.fwdFile, "--reverse", w.revFile)...)
		cmd.Env = append(os.Environ(), "SHADOWCUBE_NATS_URL="+w.nats.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_LOG_LEVEL=warn",
			"SHADOWCUBE_LEGACY_DATABASE_URL="+w.legacyURL, "SAJU_CUBE_DATABASE_URL="+w.cubeURL)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("shadowcube %s → exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		return out.String(), code
	}
	out, code := run("rollout", "status")
	if code != 0 || !strings.Contains(out, "flag:       25%") || !strings.Contains(out, "taps:       1 live") || !strings.Contains(out, "gate:") {
		t.Fatalf("status: exit %d", code)
	}
	out, code = run("rollout", "rollback")
	if code != 0 || !strings.Contains(out, "verdict: clean") || !strings.Contains(out, "flag change to caught up:") {
		t.Fatalf("rollback: exit %d", code)
	}
	out, _ = run("rollout", "status")
	if !strings.Contains(out, "flag:       0%") || !strings.Contains(out, " 0 differences in") {
		t.Errorf("status after the drill should show 0%% and the drill's reconcile")
	}
	// reverse sync down: the drill cannot prove the cube's writes reached
	// legacy and says so within its bound
	if _, err := s.flags.Set(w.ctx, "saju", 25); err != nil {
		t.Fatal(err)
	}
	w.waitFor(30*time.Second, "the tap at 25% again", func() bool { return s.watcher.Percent() == 25 })
	w.procs[syncRev].kill9()
	out, code = run("rollout", "rollback", "--catchup-wait", "2s")
	if code != 1 || !strings.Contains(out, "4. reverse sync caught up with the cube") || !strings.Contains(out, "did not reach the cube's WAL position") ||
		!strings.Contains(out, "verdict: NOT clean") {
		t.Errorf("rollback with reverse sync down: exit %d, want 1 and the catch-up step failed", code)
	}
}
