package main

import (
	"bytes"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/internal/wiring"
)

// TestDemoEndToEnd runs the whole pipeline — taps, cdc, sync, shadow with the
// freshness barrier, comparator, reconcile — on real PostgreSQL and an
// embedded NATS, and checks what a newcomer running `make demo` would read:
// every pair compared, legacy and cube databases equal, and the planted saju
// divergences reported with their causes.
func TestDemoEndToEnd(t *testing.T) {
	pg := testenv.Postgres(t)
	var out, errb bytes.Buffer
	e := &Env{Stdout: &out, Stderr: &errb, Reg: process.NewRegistry()}
	if err := process.Load(&e.Common); err != nil {
		t.Fatal(err)
	}
	e.Common.NATSURL = ""
	var logs testenv.Buffer
	e.Base = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.Log = e.Base.With("stage", "demo") // as setup does
	ctx := testenv.Context(t, 4*time.Minute)
	err := runDemo(ctx, e, pg.AdminURL(), wiring.DemoOptions{Requests: 80, EdgeShare: 0.5, AIDrop: 2, Timeout: 2 * time.Minute})
	t.Logf("stdout:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v\nstderr:\n%s\nlog:\n%s", err, errb.String(), logs.String())
	}
	// Each log line carries the stage attribute once: the demo's own lines
	// say demo, each stage's lines its name (stage packages add none).
	stages := map[string]bool{}
	for line := range strings.Lines(logs.String()) {
		if n := strings.Count(line, "stage="); n != 1 {
			t.Errorf("log line with stage %d times: %s", n, line)
		}
		if m := regexp.MustCompile(`stage=(\S+)`).FindStringSubmatch(line); m != nil {
			stages[m[1]] = true
		}
	}
	if !stages["demo"] || !stages["cdc"] {
		t.Errorf("want log lines of the demo and cdc stages, got stages %v", stages)
	}
	report := out.String()
	m := regexp.MustCompile(`source rows (\d+), target rows (\d+), differences (\d+)`).FindStringSubmatch(report)
	if m == nil || m[1] != "80" || m[2] != "80" || m[3] != "0" {
		t.Fatalf("reconcile line wrong: %v", m)
	}
	pairs := regexp.MustCompile(`(?m)^saju /api/saju/chart\s+saju\s+(\d+)\s+(\d+)\s+(\d+)`).FindStringSubmatch(report)
	if pairs == nil || pairs[1] != "80" {
		t.Fatalf("saju pairs line wrong: %v", pairs)
	}
	if mism, _ := strconv.Atoi(pairs[3]); mism == 0 {
		t.Fatalf("half the births are in divergence zones but no saju mismatch was reported")
	}
	if strings.Contains(report, "unexplained") {
		t.Errorf("a mismatch was not attributed to a known cause")
	}
	if !regexp.MustCompile(`(?m)^ai /api/ai/analyze\s+ai\s+80\s`).MatchString(report) {
		t.Errorf("AI pairs not all compared")
	}
	if !strings.Contains(report, "rollback rule: ok") {
		t.Errorf("a 2 pp AI drop must pass the rollback rule")
	}
	// The demo cleans up: its databases are dropped from the given server.
	conn := testenv.Connect(t, pg.AdminURL())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE 'shadowcube_demo_%'").Scan(&n); err != nil || n != 0 {
		t.Errorf("demo left %d databases behind (%v)", n, err)
	}
}
