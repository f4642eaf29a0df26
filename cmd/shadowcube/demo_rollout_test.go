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

// TestDemoRollout runs `demo --rollout 25`: after the shadow phase a quarter
// of the saju users are served by the cube, their charts reach legacy
// through reverse sync, and the rollback drill at the end is clean, its
// steps in the summary.
func TestDemoRollout(t *testing.T) {
	pg := testenv.Postgres(t)
	var out, errb bytes.Buffer
	e := &Env{Stdout: &out, Stderr: &errb, Reg: process.NewRegistry()}
	if err := process.Load(&e.Common); err != nil {
		t.Fatal(err)
	}
	e.Common.NATSURL = ""
	var logs testenv.Buffer
	e.Base = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.Log = e.Base.With("stage", "demo")
	ctx := testenv.Context(t, 4*time.Minute)
	err := runDemo(ctx, e, pg.AdminURL(), wiring.DemoOptions{Requests: 60, EdgeShare: 0.2, AIDrop: 2, Timeout: 2 * time.Minute, Rollout: 25})
	report := out.String()
	t.Logf("stdout:\n%s", report)
	if err != nil {
		t.Fatalf("demo failed: %v\nstderr:\n%s\nlog:\n%s", err, errb.String(), tail(logs.String(), 8000))
	}
	m := regexp.MustCompile(`now in legacy saju_records: (\d+)`).FindStringSubmatch(report)
	if m == nil {
		t.Fatal("no rollout section in the summary")
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("no chart written by the cube reached legacy")
	}
	for _, want := range []string{"== rollout 25% and rollback drill", "1. set flag to 0%", "4. reverse sync caught up with the cube",
		"6. reconcile cube → legacy", "flag change to caught up:", "verdict: clean"} {
		if !strings.Contains(report, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if regexp.MustCompile(`[1-9]\d* differences`).MatchString(report) {
		t.Errorf("a reconcile found differences")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
