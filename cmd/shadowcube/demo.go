package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/wiring"
)

const demoHelp = `demo runs the whole shadowcube pipeline on this machine with no set-up and
prints the verdict:

  1. a throwaway PostgreSQL cluster from the local binaries (initdb into a temp
     dir, wal_level=logical), or the server of SHADOWCUBE_SOURCE_DATABASE_URL,
     with three databases: the legacy one, the saju cube's and the mismatch store;
  2. an embedded NATS JetStream server (or SHADOWCUBE_NATS_URL);
  3. the systems under test: legacy saju + saju cube, legacy AI + AI cube
     (internal/demo), on free loopback ports;
  4. cdc (legacy database → CDC stream) and sync (CDC → the cube's database,
     mapping saju_records to cube.saju_charts);
  5. a tap in front of each legacy service (capture into LEGACY_REQUESTS);
  6. the shadow replayer (waits on the cube's sync watermark, replays to the
     cubes) and the comparator (saju by domain with cause tags, AI by accuracy);
  7. the traffic generator sending realistic births through the taps;
  8. when every pair is compared: reconcile of legacy vs cube database, and the
     mismatch summary by route, cause and signature.

Everything it started is stopped and removed at the end (databases it created
on a given server are dropped).

Environment:
  SHADOWCUBE_SOURCE_DATABASE_URL  use this PostgreSQL server instead of a throwaway cluster
  SHADOWCUBE_NATS_URL             use this NATS server instead of an embedded one`

func newDemoCmd() *cobra.Command {
	opts := wiring.DemoOptions{Requests: 400, EdgeShare: 0.2, AIDrop: 2, Timeout: 3 * time.Minute}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on embedded infrastructure and print the verdict",
		Long:  demoHelp + commonEnvHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Requests <= 0 || opts.EdgeShare < 0 || opts.EdgeShare > 1 || opts.AIDrop < 0 || opts.AIDrop > 50 {
				return usageError{fmt.Errorf("--requests must be > 0, --edge-share in 0..1, --ai-drop in 0..50 (got %d, %v, %v)", opts.Requests, opts.EdgeShare, opts.AIDrop)}
			}
			ctx, e, err := setup(cmd, "demo", true)
			if err != nil {
				return err
			}
			defer e.Close()
			var env struct {
				SourceURL string `envconfig:"SOURCE_DATABASE_URL" desc:"PostgreSQL server to create the demo databases on (default: a throwaway cluster)"`
			}
			if err := process.Load(&env); err != nil {
				return err
			}
			return runDemo(ctx, e, env.SourceURL, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Requests, "requests", opts.Requests, "births to send (each makes a saju request and an AI request)")
	f.Float64Var(&opts.Rate, "rate", opts.Rate, "births per second (0 = as fast as the services allow)")
	f.Float64Var(&opts.EdgeShare, "edge-share", opts.EdgeShare, "share of births in the known divergence zones (0..1)")
	f.Float64Var(&opts.AIDrop, "ai-drop", opts.AIDrop, "AI cube accuracy drop in percentage points (2 passes the gate rule, 8 fails it)")
	f.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "longest wait for the pipeline to compare every pair")
	return cmd
}

// runDemo runs the demo (wiring.RunDemo) and prints its report.
func runDemo(ctx context.Context, e *Env, sourceURL string, opts wiring.DemoOptions) error {
	opts.SourceURL = sourceURL
	rep, err := wiring.RunDemo(ctx, e, opts)
	if err != nil {
		return err
	}
	out := e.Stdout
	fmt.Fprintln(out, "== traffic")
	sum := rep.Load
	fmt.Fprintf(out, "births %d (lunar %d, unknown hour %d), users %d, requests %d\n", sum.Births, sum.Lunar, sum.UnknownHr, sum.Users, rep.Sent)
	fmt.Fprintln(out, "== reconcile (legacy saju_records vs cube.saju_charts)")
	diffs := 0
	for _, r := range rep.Reconcile {
		fmt.Fprintf(out, "%s → %s: source rows %d, target rows %d, differences %d\n", r.Source, r.Table, r.SourceRows, r.TargetRows, r.Differences)
		diffs += r.Differences
	}
	fmt.Fprintln(out, "== mismatch summary")
	if err := rep.Summary.WriteText(out); err != nil {
		return err
	}
	if diffs > 0 {
		return &exitError{code: 1, err: fmt.Errorf("demo: reconcile found %d differences between legacy and cube", diffs)}
	}
	return nil
}
