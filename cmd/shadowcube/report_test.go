package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestReportAndGateCLI: report writes HTML, JSON and CSV from a store; gate
// prints a line per criterion and exits 1 (no-go: a few pairs are never
// enough) or 2 for bad usage.
func TestReportAndGateCLI(t *testing.T) {
	url := testenv.Postgres(t).NewDatabase(t)
	ctx := testenv.Context(t, 2*time.Minute)
	st, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	var outs []*comparator.Outcome
	for i := range 40 {
		o := &comparator.Outcome{RequestID: "cli-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Service: "saju", Route: "/api/saju/chart",
			Kind: comparator.KindSaju, Verdict: comparator.VerdictMatch, Severity: schemas.SeverityInfo, ReplayedAt: now, ComparedAt: now,
			LegacyLatency: 10 * time.Millisecond, CubeLatency: 12 * time.Millisecond}
		if i < 3 {
			o.Verdict, o.Causes = comparator.VerdictMismatch, []string{comparator.CauseZiHour}
			o.Diffs = []schemas.Diff{{Path: "$.pillars.day", Kind: schemas.DiffChanged}}
			o.Signature = comparator.Signature("saju", "/api/saju/chart", []string{"$.pillars.day"}, o.Causes)
		}
		outs = append(outs, o)
	}
	if _, err := st.Save(ctx, outs); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SHADOWCUBE_STORE_DATABASE_URL", url)
	t.Setenv("SHADOWCUBE_NATS_URL", "")
	t.Setenv("SHADOWCUBE_METRICS_ADDR", "")
	dir := t.TempDir()

	code, _, stderr := runCLI(t, "report", "--since", "1d", "--out", filepath.Join(dir, "r.html"))
	page, err := os.ReadFile(filepath.Join(dir, "r.html"))
	if code != 0 || err != nil || !strings.Contains(string(page), `data-k="pairs" data-v="40"`) {
		t.Fatalf("report html: exit %d, %v, stderr %s", code, err, stderr)
	}
	code, stdout, stderr := runCLI(t, "report", "--format", "json", "--service", "saju", "--out", "-")
	var f struct {
		Services []struct {
			Total struct{ Open int64 }
		}
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &f) != nil || len(f.Services) != 1 || f.Services[0].Total.Open != 3 {
		t.Fatalf("report json: exit %d, stdout %.300s, stderr %s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "report", "--format", "csv", "--out", filepath.Join(dir, "csv"))
	if _, err := os.Stat(filepath.Join(dir, "csv", "routes.csv")); code != 0 || err != nil {
		t.Fatalf("report csv: exit %d, %v, %s", code, err, stderr)
	}

	code, stdout, stderr = runCLI(t, "gate", "--service", "saju")
	if code != 1 || !strings.Contains(stdout, "min_pairs") || !strings.Contains(stdout, "verdict saju: no-go: not enough samples") ||
		!strings.Contains(stdout, "open_mismatch") || !strings.Contains(stdout, "no NATS URL configured") {
		t.Fatalf("gate: exit %d, stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "gate", "--service", "saju", "--format", "json")
	var g struct {
		Go       bool
		Services []struct{ Verdict string }
	}
	if code != 1 || json.Unmarshal([]byte(stdout), &g) != nil || g.Go || g.Services[0].Verdict != "no-go: not enough samples" {
		t.Fatalf("gate json: exit %d, %s", code, stdout)
	}
	for _, args := range [][]string{
		{"gate", "--format", "xml"},
		{"gate", "--since", "yesterday"},
		{"gate", "--criteria", filepath.Join(dir, "missing.yaml")},
		{"report", "--format", "pdf"},
		{"report", "--format", "csv", "--out", "-"},
		{"report", "--since", "1h", "--until", "2h"},
	} {
		if code, _, stderr := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
	for _, c := range []string{"report", "gate"} {
		if code, stdout, _ := runCLI(t, c, "--help"); code != 0 || !strings.Contains(stdout, "Exit status") {
			t.Errorf("%s --help: exit %d", c, code)
		}
	}
}
