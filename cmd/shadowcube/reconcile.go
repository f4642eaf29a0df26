package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newReconcileCmd() *cobra.Command {
	var e wiring.ReconcileEnv
	return configured("reconcile", "reconcile", "Prove a cube database holds what the legacy database holds, through the mapping", &e, `
  SHADOWCUBE_SOURCE_DATABASE_URL  legacy PostgreSQL (or the mapping's source.database_url_env)
  <target database_url_env>       each target's cube database URL`+mappingHelp,
		func(cmd *cobra.Command, _ []string) error {
			if err := e.Check(); err != nil {
				return err
			}
			m, err := wiring.LoadMapping(e.MappingFile)
			if err != nil {
				return err
			}
			selected, err := m.Select(e.Targets, e.Tables)
			if err != nil {
				return err
			}
			ctx, env, err := setup(cmd, "reconcile", false)
			if err != nil {
				return err
			}
			defer env.Close()
			start := time.Now()
			all, err := wiring.Reconcile(ctx, env, m, selected, consumers.ReconcileConfig{
				LeafRows: e.LeafRows, Settle: e.Settle, MaxDiffs: e.MaxDiffs, SkipSequences: e.NoSequences}, e.Pushgateway)
			if err != nil {
				return err
			}
			wiring.RecordReconcile(ctx, env, all, len(e.Tables) == 0, start) // the gate reads it
			if len(all) == 0 {
				// unreachable through the checks above; never let it pass as "no differences"
				return &exitError{code: 1, err: fmt.Errorf("reconcile: no table compared")}
			}
			total := 0
			for _, r := range all {
				total += r.Differences
			}
			if e.Format == "json" {
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
		})
}

func showVal(v *string) string {
	if v == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *v)
}
