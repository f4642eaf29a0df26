package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/wiring"
)

var mappingHelp = help("mapping")

func newSyncCmd() *cobra.Command {
	var e wiring.SyncEnv
	return configured("sync", "sync", "Apply the CDC stream to each cube's PostgreSQL database through the mapping", &e, `
  <target database_url_env>       each target's cube database URL`+mappingHelp,
		func(cmd *cobra.Command, _ []string) error {
			e.Targets = wiring.SplitList(strings.Join(e.Targets, ","))
			m, err := wiring.LoadMapping(e.MappingFile)
			if err != nil {
				return err
			}
			if err := m.CheckTargets(e.Targets); err != nil {
				return err
			}
			if e.Sequences {
				return syncSequencesOnce(cmd, m, e.Targets)
			}
			return runStage(cmd, "sync", func(_ context.Context, p *Env, conn *natsx.Conn) (wiring.Stage, error) {
				return wiring.NewSync(p, conn, &e, m)
			})
		})
}

// syncSequencesOnce is `sync --sequences`: validate the mapping of each
// selected target, move its sequences, print one line per sequence.
func syncSequencesOnce(cmd *cobra.Command, m *wiring.Mapping, only []string) error {
	ctx, env, err := setup(cmd, "sync", false)
	if err != nil {
		return err
	}
	defer env.Close()
	for _, t := range m.Selected(only) {
		var ps []consumers.SequencePosition
		err := m.Connect(ctx, t, func(src, dst *pgx.Conn) (err error) {
			ps, err = consumers.SyncSequences(ctx, t, src, dst)
			return err
		})
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			fmt.Fprintf(env.Stdout, "%s: no sequence feeds a mapped column\n", t.Name)
		}
		for _, p := range ps {
			what := "already past the values in use"
			if p.Moved {
				what = "moved"
			}
			fmt.Fprintf(env.Stdout, "%s %s (%s): next value %d -> %d, %s (highest in use %d", t.Name, p.Sequence,
				strings.Join(p.Columns, ", "), p.NextBefore, p.NextAfter, what, p.Want)
			if p.SourceLast != nil {
				fmt.Fprintf(env.Stdout, ", source last value %d", *p.SourceLast)
			}
			fmt.Fprintln(env.Stdout, ")")
			if p.Note != "" {
				fmt.Fprintf(env.Stdout, "  note: %s\n", p.Note)
			}
		}
	}
	return nil
}
