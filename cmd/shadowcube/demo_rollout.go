package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/rollout"
	"github.com/heal7/shadowcube/publisher"
)

// The rollout phase of `shadowcube demo --rollout N` (see demoHelp): two-way
// sync from the start, then N% of saju users served by the cube after the
// shadow phase, then the rollback drill.

const (
	demoForwardSlot = "shadowcube_demo"
	demoReverseSlot = "shadowcube_demo_reverse"
)

// demoForwardMapping is the mapping of the forward sync: the plain demo
// mapping, or with --rollout the one with a conflict policy (internal/demo).
func demoForwardMapping(opts demoOptions) string {
	if opts.Rollout == 0 {
		return demoMapping
	}
	return strings.Replace(demo.ForwardMapping, "slot: shadowcube_forward", "slot: "+demoForwardSlot, 1)
}

// demoPrepareRollout makes both saju tables send whole old rows (conflict
// detection) before cdc starts.
func demoPrepareRollout(ctx context.Context, dbs demoDBs) error {
	for url, sql := range map[string]string{dbs.legacy: demo.LegacyRolloutSchema, dbs.cube: demo.CubeRolloutSchema} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return fmt.Errorf("demo: rollout: %w", err)
		}
		_, err = conn.Exec(ctx, sql)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("demo: rollout: %s: %w", sql, err)
		}
	}
	return nil
}

// startDemoReverse starts cdc on the cube database and sync with the
// reverse mapping into legacy. Their metrics go to a registry of their own
// (the forward stages' metric names are taken).
func startDemoReverse(ctx context.Context, cancel context.CancelFunc, st *demoStack, e *Env, nc *natsx.Conn, dbs demoDBs) (*consumers.Mapping, error) {
	reg := prometheus.NewRegistry()
	reader, err := cdc.New(cdc.Config{DatabaseURL: dbs.cube, Slot: demoReverseSlot, Publication: "shadowcube_demo", IgnoreOrigins: []string{demoForwardSlot}},
		cdc.Deps{JetStream: nc.JS, Logger: e.Base.With("stage", "cdc", "direction", "reverse"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	st.goRun(ctx, cancel, "cdc (reverse)", reader.Run)
	rev, err := consumers.ParseMapping("demo-reverse-mapping.yaml", []byte(strings.Replace(demo.ReverseMapping, "slot: shadowcube_reverse", "slot: "+demoReverseSlot, 1)))
	if err != nil {
		return nil, err
	}
	syncer, err := consumers.New(consumers.Config{Mapping: rev, SourceURL: dbs.cube, TargetURLs: map[string]string{"legacy": dbs.legacy}},
		consumers.Deps{JetStream: nc.JS, Logger: e.Base.With("stage", "sync", "direction", "reverse"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	st.onStop(func() { syncer.Close() })
	st.goRun(ctx, cancel, "sync (reverse)", syncer.Run)
	st.step("reverse cdc + sync: cube database → legacy saju_records (slot %s)", demoReverseSlot)
	return rev, nil
}

// demoRolloutTap is the saju tap's rollout: it follows the flag and reports
// its in-flight count for the drill.
func demoRolloutTap(ctx context.Context, st *demoStack, tap *publisher.Tap, w *publisher.FlagWatcher, flags *publisher.Flags) {
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); publisher.ReportTap(rctx, flags.KV(), tap, "saju", "demo-tap", 0, st.log) }()
	st.onStop(func() { stop(); <-done; w.Close() })
}

// runDemoRollout is the rollout phase: flag at percent, traffic, then the
// drill; its report is written to out. It returns whether the drill was clean.
func runDemoRollout(ctx context.Context, st *demoStack, nc *natsx.Conn, dbs demoDBs, fwd, rev *consumers.Mapping, percent int,
	traffic func(ctx context.Context) (int, error), out io.Writer) (bool, error) {
	flags, err := publisher.OpenFlags(ctx, nc.JS)
	if err != nil {
		return false, err
	}
	if _, err := flags.Set(ctx, "saju", percent); err != nil {
		return false, err
	}
	st.step("rollout: flag rollout.saju = %d%%: rolled-out users are served by the saju cube, which writes to its own database", percent)
	sent, err := traffic(ctx)
	if err != nil {
		return false, err
	}
	st.step("rollout: sent %d more births through the taps; rollback drill", sent)
	cfg := rollout.Config{Service: "saju", JS: nc.JS, Forward: fwd, Reverse: rev, LegacyURL: dbs.legacy, CubeURL: dbs.cube}
	d, err := rollout.Rollback(ctx, cfg, func(s rollout.Step) {
		v := "ok"
		if !s.OK {
			v = "FAILED"
		}
		st.step("rollback: %s: %s in %s", s.Name, v, s.Duration.Round(time.Millisecond))
	})
	if err != nil {
		return false, err
	}
	cubeRows := int64(0)
	if conn, err := pgx.Connect(ctx, dbs.legacy); err == nil {
		conn.QueryRow(ctx, `SELECT count(*) FROM saju_records WHERE id >= $1`, demo.CubeOwnIDStart).Scan(&cubeRows)
		conn.Close(ctx)
	}
	fmt.Fprintf(out, "== rollout %d%% and rollback drill\n", percent)
	fmt.Fprintf(out, "charts the saju cube wrote for rolled-out users, now in legacy saju_records: %d\n", cubeRows)
	return d.Clean(), d.WriteText(out)
}
