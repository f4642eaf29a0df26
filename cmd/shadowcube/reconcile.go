package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
)

func newReconcileCmd() *cobra.Command {
	var mapping, format string
	var tables, targets []string
	var leaf int64
	var settle time.Duration
	var maxDiffs int
	var noSequences bool
	var pushURL string
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Prove a cube database holds what the legacy database holds, through the mapping",
		Long: `reconcile compares, for every mapped table of every target, the source rows
transformed by the mapping's expressions (evaluated on the source database, cast
to the target column types) against the target rows: row counts and a checksum
of each side, then checksums over key ranges, bisected (like data-diff) where
they differ, down to ranges of --leaf-rows rows compared row by row. It never
loads a table whole. It prints missing rows (in the source, not in the target),
extra rows (in the target only; not reported under delete: ignore), and changed
rows with the differing columns and both values. Soft-deleted target rows count
as deleted. It also checks every sequence feeding a mapped target column
(serial, identity, or a nextval default): one whose next value is not past the
column's largest value in the cube is a difference (the cube's next own insert
would collide with a synced row). While sync runs, a sequence may lag new
rows until sync's next sequence pass (--sequence-interval, 30s): before a
cutover check, run 'shadowcube sync --sequences', which moves them at once.
A sequence the reconcile role may not read is a difference too (grant SELECT
on it, or pass --no-sequences).

Exit status: 0 when every selected table was compared and none differs;
1 when any difference remains (or no table was compared); 2 for bad usage:
an unknown --target or --table (the message lists the known ones), an
out-of-range number.

While sync runs, rows changed during the comparison may differ for a moment:
with --settle D, reconcile waits (at most D) until the target's checkpoint
passes the source WAL position seen at the start, re-reads every differing
row, and reports those that now agree as in_flight (not differences).
The mapping's expressions must be evaluable on the source database.

Flags:
  --mapping FILE     SHADOWCUBE_MAPPING_FILE   mapping file (required)
  --table T          compare only this table (source or target name; repeatable)
  --target NAME      compare only this target (repeatable)
  --format text|json output (text); json: {"tables":[...],"differences":N}
  --leaf-rows N      range size compared row by row (1000; at least 1)
  --settle D         wait for sync to catch up and re-check differing rows (0: off; not negative)
  --max-diffs N      differences listed per table (1000; at least 1; all are counted)
  --no-sequences     skip the sequence check
  --pushgateway URL  SHADOWCUBE_RECONCILE_PUSHGATEWAY   push the run's figures per target to this
                     Prometheus Pushgateway (job shadowcube_reconcile): last run time,
                     differences, tables compared, failed; the alert rules
                     ShadowcubeReconcileStale and ShadowcubeReconcileDirty read them

Environment:
  SHADOWCUBE_SOURCE_DATABASE_URL  legacy PostgreSQL (or the mapping's source.database_url_env)
  <target database_url_env>       each target's cube database URL` + mappingHelp + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var e syncEnv
			if err := process.Load(&e); err != nil {
				return err
			}
			if cmd.Flags().Changed("mapping") {
				e.MappingFile = mapping
			}
			if !cmd.Flags().Changed("pushgateway") {
				pushURL = e.Pushgateway
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("--format %q: want text or json", format)}
			}
			if err := reconcileFlags(leaf, settle, maxDiffs); err != nil {
				return err
			}
			m, src, urls, err := loadMappingURLs(e.MappingFile)
			if err != nil {
				return err
			}
			selected, err := reconcileSelect(m, targets, tables)
			if err != nil {
				return err
			}
			ctx, env, err := setup(cmd, "reconcile", false)
			if err != nil {
				return err
			}
			defer env.Close()
			srcConn, err := consumers.ConnectSource(ctx, src)
			if err != nil {
				return fmt.Errorf("connect to source database: %w", err)
			}
			defer srcConn.Close(context.Background())
			var all []consumers.TableReport
			total := 0
			push := newReconcilePush(pushURL, env)
			rec := newReconcileRecorder(ctx, env, len(tables) == 0) // the gate reads it
			for _, sel := range selected {
				t := sel.target
				if urls[t.Name] == "" {
					return &process.EnvError{Var: t.DatabaseURLEnv, Msg: "required: database URL of target " + t.Name}
				}
				dst, err := consumers.ConnectSource(ctx, urls[t.Name])
				if err != nil {
					push.record(ctx, t.Name, nil, err)
					rec.record(ctx, t.Name, nil, err)
					return fmt.Errorf("connect to target %s: %w", t.Name, err)
				}
				var reps []consumers.TableReport
				err = m.Validate(ctx, t, srcConn, dst)
				if err == nil {
					reps, err = consumers.Reconcile(ctx, consumers.ReconcileConfig{Mapping: m, Target: t, Source: srcConn, Dest: dst,
						Tables: sel.tables, LeafRows: leaf, Settle: settle, MaxDiffs: maxDiffs, SkipSequences: noSequences,
						OnSettle: func(table string, n int) {
							env.Log.Info("differences found; waiting for sync to catch up before re-checking them",
								"table", table, "differences", n, "settle", settle)
						}})
					all = append(all, reps...)
				}
				push.record(ctx, t.Name, reps, err)
				rec.record(ctx, t.Name, reps, err)
				dst.Close(context.Background())
				if err != nil {
					return err
				}
			}
			if len(all) == 0 {
				// unreachable through the checks above; never let it pass as "no differences"
				return &exitError{code: 1, err: fmt.Errorf("reconcile: no table compared")}
			}
			for _, r := range all {
				total += r.Differences
			}
			if format == "json" {
				b, _ := json.MarshalIndent(map[string]any{"tables": all, "differences": total}, "", "  ")
				fmt.Fprintln(env.Stdout, string(b))
			} else {
				for _, r := range all {
					fmt.Fprintf(env.Stdout, "%s %s -> %s: source %d rows, target %d rows, %d differences, %d in flight\n",
						r.Target, r.Source, r.Table, r.SourceRows, r.TargetRows, r.Differences, r.InFlight)
					for _, d := range r.Diffs {
						tag := d.Kind
						if d.InFlight {
							tag = "in-flight " + d.Kind
						}
						fmt.Fprintf(env.Stdout, "  %s key %v\n", tag, d.Key)
						for _, c := range d.Columns {
							fmt.Fprintf(env.Stdout, "    %s: source %s, target %s\n", c.Column, showVal(c.Source), showVal(c.Target))
						}
					}
					for _, q := range r.Sequences {
						switch {
						case q.Behind:
							fmt.Fprintf(env.Stdout, "  sequence behind: %s (column %s) next value %d, largest %s %d: %s\n",
								q.Sequence, q.Column, q.Next, q.Column, *q.MaxValue, q.Fix)
						case q.Error != "":
							fmt.Fprintf(env.Stdout, "  sequence unreadable: %s (column %s): %s: %s\n", q.Sequence, q.Column, q.Error, q.Fix)
						case q.Skipped != "":
							fmt.Fprintf(env.Stdout, "  sequence %s (column %s) not checked: %s\n", q.Sequence, q.Column, q.Skipped)
						}
					}
				}
			}
			if total > 0 {
				return &exitError{code: 1, err: fmt.Errorf("reconcile: %d differences", total)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&mapping, "mapping", "", "mapping file (SHADOWCUBE_MAPPING_FILE)")
	cmd.Flags().StringArrayVar(&tables, "table", nil, "compare only this table (repeatable)")
	cmd.Flags().StringArrayVar(&targets, "target", nil, "compare only this target (repeatable)")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	cmd.Flags().Int64Var(&leaf, "leaf-rows", 1000, "range size compared row by row")
	cmd.Flags().DurationVar(&settle, "settle", 0, "wait up to this for sync to catch up, then re-check differing rows")
	cmd.Flags().IntVar(&maxDiffs, "max-diffs", 1000, "differences listed per table")
	cmd.Flags().BoolVar(&noSequences, "no-sequences", false, "skip the check of sequences feeding mapped columns")
	cmd.Flags().StringVar(&pushURL, "pushgateway", "", "push the run's figures to this Prometheus Pushgateway (SHADOWCUBE_RECONCILE_PUSHGATEWAY)")
	return cmd
}

// reconcilePush pushes each target's figures to a Pushgateway, when one is
// configured. A failed push is logged with the URL redacted; it does not
// change the exit status (the comparison's verdict stands, and the stale
// alert fires when pushes stop arriving).
type reconcilePush struct {
	url string
	env *Env
}

func newReconcilePush(url string, env *Env) *reconcilePush { return &reconcilePush{url: url, env: env} }

func (p *reconcilePush) record(ctx context.Context, target string, reps []consumers.TableReport, runErr error) {
	if p.url == "" {
		return
	}
	reg := prometheus.NewRegistry()
	m, err := consumers.NewReconcileMetrics(reg)
	if err != nil {
		p.env.Log.Error("reconcile metrics", "err", err)
		return
	}
	m.Record(reps, runErr, time.Now())
	if err := push.New(p.url, "shadowcube_reconcile").Grouping("target", target).Gatherer(reg).PushContext(ctx); err != nil {
		p.env.Log.Error("push reconcile figures to the Pushgateway failed", "pushgateway", redact.URLString(p.url), "target", target, "err", redact.Err(err))
		return
	}
	p.env.Log.Info("reconcile figures pushed", "pushgateway", redact.URLString(p.url), "target", target)
}

// reconcileFlags rejects out-of-range numbers (exit status 2).
func reconcileFlags(leaf int64, settle time.Duration, maxDiffs int) error {
	var errs []error
	if leaf < 1 {
		errs = append(errs, fmt.Errorf("--leaf-rows %d: must be at least 1", leaf))
	}
	if settle < 0 {
		errs = append(errs, fmt.Errorf("--settle %s: must be 0 (off) or positive", settle))
	}
	if maxDiffs < 1 {
		errs = append(errs, fmt.Errorf("--max-diffs %d: must be at least 1", maxDiffs))
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

type reconcileTarget struct {
	target *consumers.Target
	tables []string // names given with --table that this target maps (nil: all)
}

// reconcileSelect resolves --target and --table against the mapping. An
// unknown target, or a table that no selected target maps, is a usage error
// listing the known ones: a typo must never compare nothing and pass.
func reconcileSelect(m *consumers.Mapping, targets, tables []string) ([]reconcileTarget, error) {
	var known []string
	for _, t := range m.Targets {
		known = append(known, t.Name)
	}
	for _, name := range targets {
		if m.Target(name) == nil {
			return nil, usageError{fmt.Errorf("--target %s: no such target in %s (known: %s)", name, m.File, strings.Join(known, ", "))}
		}
	}
	var out []reconcileTarget
	matched := map[string]bool{}
	var tableNames []string
	for _, t := range m.Targets {
		if len(targets) > 0 && !slices.Contains(targets, t.Name) {
			continue
		}
		for _, n := range t.TableNames() {
			tableNames = append(tableNames, t.Name+": "+n)
		}
		sel := reconcileTarget{target: t}
		if len(tables) > 0 {
			for _, name := range tables {
				if slices.ContainsFunc(t.Tables, func(tm *consumers.TableMap) bool { return tm.Matches(name) }) {
					sel.tables = append(sel.tables, name)
					matched[name] = true
				}
			}
			if len(sel.tables) == 0 {
				continue
			}
		}
		out = append(out, sel)
	}
	for _, name := range tables {
		if !matched[name] {
			return nil, usageError{fmt.Errorf("--table %s: no selected target maps such a table (known: %s)", name, strings.Join(tableNames, "; "))}
		}
	}
	return out, nil
}

func showVal(v *string) string {
	if v == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *v)
}
