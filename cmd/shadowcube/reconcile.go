package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newReconcileCmd() *cobra.Command {
	var e wiring.ReconcileEnv
	var format string
	var tables, targets []string
	var leaf int64
	var settle time.Duration
	var maxDiffs int
	var noSequences bool
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
` + wiring.EnvHelp("Environment", &e) + `
  SHADOWCUBE_SOURCE_DATABASE_URL  legacy PostgreSQL (or the mapping's source.database_url_env)
  <target database_url_env>       each target's cube database URL` + mappingHelp + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("--format %q: want text or json", format)}
			}
			if err := reconcileFlags(leaf, settle, maxDiffs); err != nil {
				return err
			}
			m, err := wiring.LoadMapping(e.MappingFile)
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
			all, err := wiring.Reconcile(ctx, env, m, selected, consumers.ReconcileConfig{
				LeafRows: leaf, Settle: settle, MaxDiffs: maxDiffs, SkipSequences: noSequences}, e.Pushgateway)
			if err != nil {
				return err
			}
			if len(all) == 0 {
				// unreachable through the checks above; never let it pass as "no differences"
				return &exitError{code: 1, err: fmt.Errorf("reconcile: no table compared")}
			}
			total := 0
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
	wiring.BindFlags(cmd.Flags(), &e)
	cmd.Flags().StringArrayVar(&tables, "table", nil, "compare only this table (repeatable)")
	cmd.Flags().StringArrayVar(&targets, "target", nil, "compare only this target (repeatable)")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	cmd.Flags().Int64Var(&leaf, "leaf-rows", 1000, "range size compared row by row")
	cmd.Flags().DurationVar(&settle, "settle", 0, "wait up to this for sync to catch up, then re-check differing rows")
	cmd.Flags().IntVar(&maxDiffs, "max-diffs", 1000, "differences listed per table")
	cmd.Flags().BoolVar(&noSequences, "no-sequences", false, "skip the check of sequences feeding mapped columns")
	return cmd
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

// reconcileSelect resolves --target and --table against the mapping. An
// unknown target, or a table that no selected target maps, is a usage error
// listing the known ones: a typo must never compare nothing and pass.
func reconcileSelect(m *wiring.Mapping, targets, tables []string) ([]wiring.ReconcileTarget, error) {
	var known []string
	for _, t := range m.Targets {
		known = append(known, t.Name)
	}
	for _, name := range targets {
		if m.Target(name) == nil {
			return nil, usageError{fmt.Errorf("--target %s: no such target in %s (known: %s)", name, m.File, strings.Join(known, ", "))}
		}
	}
	var out []wiring.ReconcileTarget
	matched := map[string]bool{}
	var tableNames []string
	for _, t := range m.Targets {
		if len(targets) > 0 && !slices.Contains(targets, t.Name) {
			continue
		}
		for _, n := range t.TableNames() {
			tableNames = append(tableNames, t.Name+": "+n)
		}
		sel := wiring.ReconcileTarget{Target: t}
		if len(tables) > 0 {
			for _, name := range tables {
				if slices.ContainsFunc(t.Tables, func(tm *consumers.TableMap) bool { return tm.Matches(name) }) {
					sel.Tables = append(sel.Tables, name)
					matched[name] = true
				}
			}
			if len(sel.Tables) == 0 {
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
