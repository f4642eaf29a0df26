package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/analyst"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
)

func newGateCmd() *cobra.Command {
	var w reportWindow
	var format, criteria, accepted string
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Go / no-go verdict per cube for cutover, from the mismatch store (exit 0 go, 1 no-go)",
		Long: `gate scores the cutover criteria on the mismatch store's roll-ups (and, when
SHADOWCUBE_NATS_URL is set, the sync watermarks and the DLQ) and prints one
line per criterion and subject (name, measured value, threshold, pass/fail),
a score per criterion group (Kayenta style: pass, marginal, fail) and a
verdict per service's cube.

Criteria (defaults; a YAML file given with --criteria changes any of them and
can turn each off with enabled: false):
  min_pairs      at least 1000 compared pairs per route
  open_mismatch  open mismatch rate (neither noise nor accepted as expected; a
                 cause tag explains a difference but does not clear it) at most
                 0.05% per saju/json route, judged on the UPPER end of its
                 Wilson 95% interval, so a small sample cannot pass
  ai_accuracy    AI accuracy drop not significant beyond 5 pp (the rollback rule:
                 drop > max_drop and one-sided p < alpha fails)
  sync_lag       p99 of the sync watermarks' lag (applied_at - commit_time) in the
                 KV bucket's history below 30s, per sync target named <service>*
  reconcile      the last 'shadowcube reconcile' of each target <service>* clean and
                 younger than 24h (reconcile records it in the store)
  dlq            every dlq.<stage> subject empty
  stale          stale-cube share at most 1% per route
  cube_errors    cube error rate at most 0.5% per route

Routes shadow never replays (only skipped requests, e.g. writes) get no check.
A criterion without data (no NATS URL, no reconcile recorded, no pairs) is
"no data", and any missing data or too few pairs makes the verdict
"no-go: not enough samples": never go.

Criteria file:
  version: 1
  min_pairs:     {min: 1000}
  open_mismatch: {max_rate: 0.0005, kinds: [saju, json]}
  ai_accuracy:   {max_drop: 0.05, alpha: 0.05, min_samples: 30}
  sync_lag:      {max_p99: 30s, targets: [saju-cube]}
  reconcile:     {max_age: 24h, targets: [saju-cube]}
  dlq:           {enabled: false}
  stale:         {max_share: 0.01}
  cube_errors:   {max_rate: 0.005}
  marginal: 75   # group score (0..100) from which a partial pass is marginal

Flags:
  --service NAME     the cube's service (default: every service in the store)
  --since T, --until T   window: a duration back from now or a time (RFC 3339);
                     default the last 7 days (roll-ups are kept for ever)
  --criteria FILE    criteria YAML (default built in)
  --accepted FILE    accepted-signatures file deciding what is accepted now (default
                     SHADOWCUBE_COMPARE_ACCEPTED_FILE; none: as recorded at compare time)
  --format text|json (text)

Exit status: 0 go, 1 no-go (or a failure), 2 bad usage.` + analystEnvHelp + `
  SHADOWCUBE_NATS_URL             NATS for sync watermarks and the DLQ (empty: those are "no data")`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			q, err := w.query(now)
			if err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("--format %q: want text or json", format)}
			}
			crit, err := loadCriteriaFlag(criteria)
			if err != nil {
				return err
			}
			st, env, err := openAnalystStore(cmd, "gate")
			if err != nil {
				return err
			}
			defer st.Close()
			in, done, err := gateInputs(cmd)
			if err != nil {
				return err
			}
			defer done()
			if !cmd.Flags().Changed("accepted") {
				accepted = env.AcceptedFile
			}
			if accepted != "" {
				if in.Accepted, err = comparator.LoadAccepted(accepted); err != nil {
					return usageError{err}
				}
			}
			g, err := analyst.Evaluate(cmd.Context(), st, q, crit, in, now)
			if err != nil {
				return err
			}
			if format == "json" {
				b, err := json.MarshalIndent(g, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			} else if err := g.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if !g.Go {
				return &exitError{code: 1, err: fmt.Errorf("gate: %s", gateSummary(g))}
			}
			return nil
		},
	}
	// The roll-ups are kept for ever: a verdict judges recent traffic (the
	// cube as deployed now), not a month-old build.
	w.register(cmd, false, "7d")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	cmd.Flags().StringVar(&criteria, "criteria", "", "criteria YAML (default built in)")
	cmd.Flags().StringVar(&accepted, "accepted", "", "accepted-signatures file (SHADOWCUBE_COMPARE_ACCEPTED_FILE)")
	return cmd
}

func gateSummary(g *analyst.Gate) string {
	s := ""
	for i, v := range g.Services {
		if i > 0 {
			s += "; "
		}
		s += v.Service + " " + v.Verdict
	}
	return s
}

// gateInputs connects to NATS when SHADOWCUBE_NATS_URL is set (never an
// embedded server: a gate must read the pipeline's own streams).
func gateInputs(cmd *cobra.Command) (analyst.GateInputs, func(), error) {
	ctx, env, err := setup(cmd, "gate", false)
	if err != nil {
		return analyst.GateInputs{}, func() {}, err
	}
	if env.Common.NATSURL == "" {
		return analyst.GateInputs{}, env.Close, nil
	}
	conn, err := env.ConnectNATS(ctx)
	if err != nil {
		env.Close()
		return analyst.GateInputs{}, func() {}, err
	}
	return analyst.GateInputs{JS: conn.JS}, env.Close, nil
}

// reconcileRecorder records each target's reconcile result in the mismatch
// store for the gate, when SHADOWCUBE_STORE_DATABASE_URL is set. A failure
// to record is logged; it does not change reconcile's verdict.
type reconcileRecorder struct {
	env   *Env
	st    *comparator.Store
	whole bool // every table of the target was selected
	start time.Time
}

func newReconcileRecorder(ctx context.Context, env *Env, whole bool) *reconcileRecorder {
	r := &reconcileRecorder{env: env, whole: whole, start: time.Now()}
	var ae analystEnv
	if err := process.Load(&ae); err != nil || ae.StoreURL == "" {
		return r
	}
	st, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: ae.StoreURL, Schema: ae.Schema, MaxConns: 1})
	if err != nil {
		env.Log.Warn("reconcile result not recorded in the mismatch store", "err", redact.Err(err))
		return r
	}
	r.st = st
	env.OnClose(func() { st.Close() })
	return r
}

func (r *reconcileRecorder) record(ctx context.Context, target string, reps []consumers.TableReport, runErr error) {
	if r.st == nil {
		return
	}
	run := analyst.ReconcileRun{Target: target, StartedAt: r.start, FinishedAt: time.Now(), Tables: len(reps), Clean: runErr == nil && r.whole}
	for _, rep := range reps {
		run.Differences += int64(rep.Differences)
	}
	if run.Differences > 0 {
		run.Clean = false
	}
	switch {
	case runErr != nil:
		run.Detail = "failed: " + redact.Err(runErr).Error()
	case !r.whole:
		run.Detail = "partial: only some tables compared (--table)"
	}
	if err := analyst.RecordReconcile(ctx, r.st, run); err != nil {
		r.env.Log.Warn("reconcile result not recorded in the mismatch store", "target", target, "err", redact.Err(err))
	}
	r.start = time.Now()
}
