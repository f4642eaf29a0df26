package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/wiring"
)

var demoHelp = help("demo")

func newDemoCmd() *cobra.Command {
	opts := wiring.DemoOptions{Requests: 400, EdgeShare: 0.2, AIDrop: 2, Timeout: 3 * time.Minute}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on embedded infrastructure and print the verdict",
		Long:  demoHelp + commonEnvHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Rollout < 0 || opts.Rollout > 100 {
				return usageError{fmt.Errorf("--rollout must be in 0..100 (got %d)", opts.Rollout)}
			}
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
	f.IntVar(&opts.Rollout, "rollout", 0, "then serve this percent of saju users from the cube with two-way sync, and run the rollback drill (0: no rollout phase)")
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
	fmt.Fprint(out, rep.Drill)
	if !rep.Clean {
		return &exitError{code: 1, err: errors.New("demo: the rollback drill is not clean")}
	}
	if diffs > 0 {
		return &exitError{code: 1, err: fmt.Errorf("demo: reconcile found %d differences between legacy and cube", diffs)}
	}
	return nil
}
