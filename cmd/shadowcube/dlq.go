package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/process"
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and re-drive the sync dead-letter queue (dlq.sync)",
		Long: `dlq works on the poison transactions sync published to dlq.sync (stream DLQ).
Each entry holds the target, the source position (commit LSN, or LSN#index of
a snapshot row), the error (with SQLSTATE and table) and the whole source
transaction's change events.

  dlq list                 one line per entry: seq, target, position, policy, error
  dlq show SEQ             the whole entry as JSON
  dlq replay SEQ... --mapping FILE | --all --mapping FILE
                           apply the entry's transaction to its target through the (fixed)
                           mapping, validated first, in one target transaction; the target's
                           checkpoint moves forward to it when it is behind (a target stopped
                           at it then resumes by itself); the entry is deleted on success.
                           Under on_poison: skip later changes were already applied: replaying
                           an old transaction over them is the operator's decision.
  dlq drop SEQ...          delete entries (the transaction stays unapplied; a target stopped
                           at it stays stopped: use on_poison: skip or replay instead)

Flags:
  --mapping FILE   SHADOWCUBE_MAPPING_FILE   mapping file (replay)
  --all                                      replay every entry (replay)
  --format text|json                         output of list (text)

Environment (replay):
  SHADOWCUBE_SOURCE_DATABASE_URL  legacy PostgreSQL (or the mapping's source.database_url_env),
                                  to validate the mapping
  <target database_url_env>       the cube database URL of each target replayed to` + commonEnvHelp,
	}
	var format string
	list := &cobra.Command{
		Use:   "list",
		Short: "List dlq.sync entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withDLQ(cmd, func(ctx context.Context, env *Env, d *dlqDeps) error {
				w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				if format == "text" {
					fmt.Fprintln(w, "SEQ\tTARGET\tPOSITION\tPOLICY\tFAILED AT\tERROR")
				}
				err := consumers.ListDLQ(ctx, d.js, func(m consumers.DLQMessage) error {
					if format == "json" {
						b, _ := json.Marshal(m)
						_, err := fmt.Fprintln(env.Stdout, string(b))
						return err
					}
					_, err := fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", m.Seq, m.Entry.Target, m.Entry.Position, m.Entry.Policy,
						m.Entry.FailedAt.Format("2006-01-02T15:04:05Z"), m.Entry.Error)
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
			return withDLQ(cmd, func(ctx context.Context, env *Env, d *dlqDeps) error {
				m, err := consumers.GetDLQ(ctx, d.js, seqs[0])
				if err != nil {
					return err
				}
				b, _ := json.MarshalIndent(m, "", "  ")
				fmt.Fprintln(env.Stdout, string(b))
				return nil
			})
		},
	}
	var mapping string
	var all bool
	replay := &cobra.Command{
		Use:   "replay SEQ... | --all",
		Short: "Apply entries to their targets through the mapping, then delete them",
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs, err := parseSeqs(args)
			if err != nil {
				return err
			}
			if len(seqs) == 0 && !all {
				return usageError{fmt.Errorf("replay: give entry sequence numbers or --all")}
			}
			var e syncEnv
			if err := process.Load(&e); err != nil {
				return err
			}
			if cmd.Flags().Changed("mapping") {
				e.MappingFile = mapping
			}
			m, src, urls, err := loadMappingURLs(e.MappingFile)
			if err != nil {
				return err
			}
			return withDLQ(cmd, func(ctx context.Context, env *Env, d *dlqDeps) error {
				if all {
					if err := consumers.ListDLQ(ctx, d.js, func(msg consumers.DLQMessage) error {
						seqs = append(seqs, msg.Seq)
						return nil
					}); err != nil {
						return err
					}
				}
				srcConn, err := consumers.ConnectSource(ctx, src)
				if err != nil {
					return fmt.Errorf("connect to source database: %w", err)
				}
				defer srcConn.Close(context.Background())
				validated := map[string]bool{}
				for _, seq := range seqs {
					msg, err := consumers.GetDLQ(ctx, d.js, seq)
					if err != nil {
						return err
					}
					t := m.Target(msg.Entry.Target)
					if t == nil {
						return fmt.Errorf("DLQ entry %d: target %q is not in %s", seq, msg.Entry.Target, e.MappingFile)
					}
					if urls[t.Name] == "" {
						return &process.EnvError{Var: t.DatabaseURLEnv, Msg: "required: database URL of target " + t.Name}
					}
					pool, err := consumers.OpenTargetPool(ctx, urls[t.Name])
					if err != nil {
						return err
					}
					if !validated[t.Name] {
						if err := m.Validate(ctx, t, srcConn, pool); err != nil {
							pool.Close()
							return err
						}
						validated[t.Name] = true
					}
					en, err := consumers.ReplayDLQ(ctx, d.js, seq, m, pool)
					pool.Close()
					if err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "replayed %d: target %s position %s (%d events)\n", seq, en.Target, en.Position, len(en.Events))
				}
				return nil
			})
		},
	}
	replay.Flags().StringVar(&mapping, "mapping", "", "mapping file (SHADOWCUBE_MAPPING_FILE)")
	replay.Flags().BoolVar(&all, "all", false, "replay every entry")
	drop := &cobra.Command{
		Use:   "drop SEQ...",
		Short: "Delete entries",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs, err := parseSeqs(args)
			if err != nil {
				return err
			}
			return withDLQ(cmd, func(ctx context.Context, env *Env, d *dlqDeps) error {
				for _, seq := range seqs {
					if err := consumers.DropDLQ(ctx, d.js, seq); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "dropped %d\n", seq)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(list, show, replay, drop)
	return cmd
}

type dlqDeps struct {
	js jetstream.JetStream
}

func parseSeqs(args []string) ([]uint64, error) {
	var out []uint64
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return nil, usageError{fmt.Errorf("%q is not a DLQ sequence number (see dlq list)", a)}
		}
		out = append(out, n)
	}
	return out, nil
}

func withDLQ(cmd *cobra.Command, f func(ctx context.Context, env *Env, d *dlqDeps) error) error {
	ctx, env, err := setup(cmd, "dlq", false)
	if err != nil {
		return err
	}
	defer env.Close()
	conn, err := env.ConnectNATS(ctx)
	if err != nil {
		return err
	}
	return f(ctx, env, &dlqDeps{js: conn.JS})
}
