package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/schemas"
)

func newDLQCmd() *cobra.Command {
	var stage string
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and drop dead letters of sync, shadow and compare (stream DLQ)",
		Long:  help("dlq") + commonEnvHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if stage != "" && !slices.Contains(schemas.DeadLetterStages, stage) {
				return usageError{fmt.Errorf("--stage %q: want one of %s (or none for all)", stage, strings.Join(schemas.DeadLetterStages, ", "))}
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&stage, "stage", "", "only entries of this stage: sync, shadow or compare (default all)")
	var format string
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("--format %q: want text or json", format)}
			}
			return withNATS(cmd, "dlq", func(ctx context.Context, env *Env, conn *natsx.Conn) error {
				w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				if format == "text" {
					fmt.Fprintln(w, "SEQ\tSTAGE\tREASON\tFAILED AT\tSOURCE\tERROR")
				}
				err := natsx.ListDeadLetters(ctx, conn.JS, stage, func(m natsx.DeadLetterMsg) error {
					if format == "json" {
						b, _ := json.Marshal(m)
						_, err := fmt.Fprintln(env.Stdout, string(b))
						return err
					}
					e := &m.Entry
					_, err := fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", m.Seq, e.Stage, e.Reason,
						e.FailedAt.UTC().Format("2006-01-02T15:04:05Z"), dlqSource(e), e.Error)
					return err
				})
				w.Flush()
				return err
			})
		},
	}
	list.Flags().StringVar(&format, "format", "text", "text or json (one entry per line)")
	show := &cobra.Command{
		Use:   "show SEQ",
		Short: "Print one entry as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs, err := parseSeqs(args)
			if err != nil {
				return err
			}
			return withNATS(cmd, "dlq", func(ctx context.Context, env *Env, conn *natsx.Conn) error {
				m, err := natsx.GetDeadLetter(ctx, conn.JS, seqs[0], stage)
				if err != nil {
					return err
				}
				b, _ := json.MarshalIndent(m, "", "  ")
				fmt.Fprintln(env.Stdout, string(b))
				return nil
			})
		},
	}
	var e wiring.MappingEnv
	var all bool
	replay := &cobra.Command{
		Use:   "replay SEQ... | --all",
		Short: "Replay entries (shadow, compare: republish the original; sync: apply through the mapping), then delete them",
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs, err := parseSeqs(args)
			if err != nil {
				return err
			}
			if len(seqs) == 0 && !all {
				return usageError{fmt.Errorf("replay: give entry sequence numbers or --all")}
			}
			if len(seqs) > 0 && all {
				return usageError{fmt.Errorf("replay: give entry sequence numbers or --all, not both")}
			}
			if err := load(cmd, &e); err != nil {
				return err
			}
			return withNATS(cmd, "dlq", func(ctx context.Context, env *Env, conn *natsx.Conn) error {
				return wiring.ReplayDeadLetters(ctx, conn.JS, stage, seqs, all, e.MappingFile, func(seq uint64, en *schemas.DeadLetter, applied *schemas.SyncDeadLetter) {
					if applied == nil {
						fmt.Fprintf(env.Stdout, "replayed %d: %s entry republished to %s\n", seq, en.Stage, en.Subject)
						return
					}
					fmt.Fprintf(env.Stdout, "replayed %d: target %s position %s (%d events)\n", seq, applied.Target, applied.Position, len(applied.Events))
				})
			})
		},
	}
	wiring.BindFlags(replay.Flags(), &e)
	replay.Flags().BoolVar(&all, "all", false, "replay every entry (of --stage)")
	drop := &cobra.Command{
		Use:   "drop SEQ...",
		Short: "Delete entries",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs, err := parseSeqs(args)
			if err != nil {
				return err
			}
			return withNATS(cmd, "dlq", func(ctx context.Context, env *Env, conn *natsx.Conn) error {
				for _, seq := range seqs {
					if err := natsx.DropDeadLetter(ctx, conn.JS, seq, stage); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "dropped %d\n", seq)
				}
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{show, replay, drop} {
		c.SetFlagErrorFunc(negativeArg(seqError))
	}
	cmd.AddCommand(list, show, replay, drop)
	return cmd
}

func seqError(arg string) error {
	return fmt.Errorf("DLQ sequence %s: must be at least 1 (see dlq list)", arg)
}

// dlqSource says where an entry came from: the target and source position
// of a sync entry, else the original subject.
func dlqSource(e *schemas.DeadLetter) string {
	if e.Sync != nil {
		return e.Sync.Target + "@" + e.Sync.Position
	}
	if e.Subject == "" {
		return "-"
	}
	return e.Subject
}

func parseSeqs(args []string) ([]uint64, error) {
	var out []uint64
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			if _, ierr := strconv.ParseInt(a, 10, 64); ierr == nil {
				return nil, usageError{seqError(a)}
			}
			return nil, usageError{fmt.Errorf("%q is not a DLQ sequence number (see dlq list)", a)}
		}
		if n == 0 {
			return nil, usageError{seqError("0")}
		}
		out = append(out, n)
	}
	return out, nil
}
