package wiring

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
func demoForwardMapping(opts DemoOptions) string {
	if opts.Rollout == 0 {
		return DemoMapping
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
// reverse mapping into legacy, built like the forward ones. Their metrics
// go to a registry of their own (the forward stages' metric names are
// taken).
func startDemoReverse(st *demoStack, p *Process, nc *natsx.Conn, dbs demoDBs) (*Mapping, error) {
	rp := p.Stage("cdc")
	rp.Log, rp.Reg = rp.Log.With("direction", "reverse"), prometheus.NewRegistry()
	reader, err := NewCDC(rp, nc, cdc.Config{DatabaseURL: dbs.cube, Slot: demoReverseSlot, Publication: "shadowcube_demo", IgnoreOrigins: []string{demoForwardSlot}})
	if err != nil {
		return nil, err
	}
	st.Run("cdc (reverse)", reader)
	rev, err := consumers.ParseMapping("demo-reverse-mapping.yaml", []byte(strings.Replace(demo.ReverseMapping, "slot: shadowcube_reverse", "slot: "+demoReverseSlot, 1)))
	if err != nil {
		return nil, err
	}
	m := &Mapping{Mapping: rev, SourceURL: dbs.cube, TargetURLs: map[string]string{"legacy": dbs.legacy}}
	sp := p.Stage("sync")
	sp.Log, sp.Reg = sp.Log.With("direction", "reverse"), rp.Reg
	syncer, err := NewSync(sp, nc, &SyncEnv{}, m)
	if err != nil {
		return nil, err
	}
	st.Run("sync (reverse)", syncer)
	st.step("reverse cdc + sync: cube database → legacy saju_records (slot %s)", demoReverseSlot)
	return m, nil
}

// runDemoRollout is the rollout phase: flag at percent, traffic, then the
// drill; its report is written to out. It returns whether the drill was clean.
func runDemoRollout(ctx context.Context, st *demoStack, nc *natsx.Conn, dbs demoDBs, fwd, rev *Mapping, percent int,
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
	cfg := rollout.Config{Service: "saju", JS: nc.JS, Forward: fwd.Mapping, Reverse: rev.Mapping, LegacyURL: dbs.legacy, CubeURL: dbs.cube}
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
