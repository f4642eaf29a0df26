package consumers

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/internal/testenv"
)

func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
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
	return out.String(), errb.String(), code
}

// TestCLIReconcileAndDLQ drives the real binary: reconcile exits 0 on equal
// tables and 1 with the differing row in JSON; dlq list/show/replay work on
// a poison transaction of a stopped target, which then resumes.
func TestCLIReconcileAndDLQ(t *testing.T) {
	e, _, m, lsns := poisonSetup(t, "stop")
	env := []string{"SHADOWCUBE_NATS_URL=" + e.nats.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_SOURCE_DATABASE_URL=" + e.srcURL, "X=" + e.dstURL}
	s, stop := e.startSync(m, 100)
	defer stop()
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.appliers[0].met.stopped.WithLabelValues("cube")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("target did not stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, stderr, code := runCLI(t, env, "dlq", "list")
	if code != 0 || !strings.Contains(out, "cube") || !strings.Contains(out, lsns[1].String()) || !strings.Contains(out, "check constraint") {
		t.Fatalf("dlq list: code %d\n%s\n%s", code, out, stderr)
	}
	seq := strings.Fields(strings.Split(out, "\n")[1])[0]
	out, stderr, code = runCLI(t, env, "dlq", "show", seq)
	var shown DLQMessage
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Entry.Sync.LSN != lsns[1] || len(shown.Entry.Sync.Events) != 1 {
		t.Fatalf("dlq show: code %d\n%s\n%s", code, out, stderr)
	}
	fixed := writeMapping(t, "source: {slot: s1}\ntargets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: items\n        key: [id]\n        columns:\n          price: abs(price)\n")
	out, stderr, code = runCLI(t, env, "dlq", "replay", seq, "--mapping", fixed)
	if code != 0 || !strings.Contains(out, "replayed "+seq) {
		t.Fatalf("dlq replay: code %d\n%s\n%s", code, out, stderr)
	}
	e.waitCheckpoint("cube", "s1", lsns[2], 30*time.Second)
	stop()

	// reconcile through the fixed mapping: abs(price) of row 2 is 5 in both
	out, stderr, code = runCLI(t, env, "reconcile", "--mapping", fixed, "--format", "json")
	if code != 0 || !strings.Contains(out, `"differences": 0`) {
		t.Fatalf("reconcile of equal tables: code %d\n%s\n%s", code, out, stderr)
	}
	e.exec(e.dst, `UPDATE items SET price = 42 WHERE id = 3`)
	out, stderr, code = runCLI(t, env, "reconcile", "--mapping", fixed, "--format", "json")
	var rep struct {
		Tables      []TableReport `json:"tables"`
		Differences int           `json:"differences"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.Differences != 1 || rep.Tables[0].Diffs[0].Key["id"] != "3" ||
		*rep.Tables[0].Diffs[0].Columns[0].Target != "42" {
		t.Fatalf("reconcile with drift: code %d\n%s\n%s", code, out, stderr)
	}
	out, _, code = runCLI(t, env, "reconcile", "--mapping", fixed)
	if code != 1 || !strings.Contains(out, `price: source "3", target "42"`) {
		t.Fatalf("reconcile text: code %d\n%s", code, out)
	}
	// bad mapping file: error names file and line, exit 1
	bad := writeMapping(t, "targets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: items\n        key: [id]\n        columns:\n          price: pricee\n")
	_, stderr, code = runCLI(t, env, "reconcile", "--mapping", bad)
	if code != 1 || !strings.Contains(stderr, bad+":8:") || !strings.Contains(stderr, `column "pricee" does not exist`) {
		t.Fatalf("bad mapping: code %d\n%s", code, stderr)
	}
}
