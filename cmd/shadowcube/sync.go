package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/process"
)

// syncEnv is the configuration of `shadowcube sync`; flags override it.
type syncEnv struct {
	MappingFile string        `envconfig:"MAPPING_FILE"`
	Targets     string        `envconfig:"SYNC_TARGETS"`
	MaxBatch    int           `envconfig:"SYNC_MAX_BATCH" min:"1" default:"5000"`
	AckWait     time.Duration `envconfig:"SYNC_ACK_WAIT" min:"1s" default:"5m"`
	RetryMax    time.Duration `envconfig:"SYNC_RETRY_MAX" min:"1ms" default:"5s"`
	SeqInterval time.Duration `envconfig:"SYNC_SEQUENCE_INTERVAL" min:"1s" default:"30s"`
	ReorderWait time.Duration `envconfig:"SYNC_REORDER_WAIT" min:"1s" max:"24h" default:"2m" desc:"how long a source transaction that arrived before an earlier one (a publish lost in a NATS leader election) waits for it; then the missing one is a poison unit"`
	Pushgateway string        `envconfig:"RECONCILE_PUSHGATEWAY"`
}

// check rejects out-of-range settings, naming the flag when one set the
// value and the environment variable otherwise (exit status 2).
func (e *syncEnv) check(cmd *cobra.Command) error {
	name := func(flag, env string) string {
		if cmd.Flags().Changed(flag) {
			return "--" + flag
		}
		return "SHADOWCUBE_" + env
	}
	var errs []error
	if e.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("%s %d: must be at least 1", name("max-batch", "SYNC_MAX_BATCH"), e.MaxBatch))
	}
	if e.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_SYNC_ACK_WAIT %s: must be at least 1s", e.AckWait))
	}
	if e.RetryMax < time.Millisecond {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_SYNC_RETRY_MAX %s: must be at least 1ms", e.RetryMax))
	}
	if e.SeqInterval < time.Second {
		errs = append(errs, fmt.Errorf("%s %s: must be at least 1s", name("sequence-interval", "SYNC_SEQUENCE_INTERVAL"), e.SeqInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

const mappingHelp = `
Mapping file (YAML; errors name file, line, table and column):
  source: {database_url_env: SHADOWCUBE_SOURCE_DATABASE_URL, slot: shadowcube}   # side: legacy (default) | cube
  targets:
    - name: saju-cube                       # letters, digits, '-', '_'
      database_url_env: SAJU_CUBE_DATABASE_URL
      on_poison: stop                       # stop (default) | skip
      tables:
        - source: public.saju_records       # schema.table in the legacy database
          target: cube.saju_charts          # default: same name
          key: [id]                         # target key (unique index); unmapped key columns copy
                                            # the source column of the same name
          columns:                          # target column: SQL expression over the source
            user_id: user_id                # row's columns, evaluated by the target PostgreSQL;
            birth_info: "jsonb_build_object('year', birth_year)"  # no columns = identity copy
          where: "user_id IS NOT NULL"      # optional: only rows passing it are kept in the target
          delete: delete                    # delete (default) | ignore | "soft-delete <column>"
                                            # (boolean column set true, or timestamp set to the
                                            # source commit time)
          conflict: legacy-wins             # two-way sync only: legacy-wins | cube-wins | newest
                                            # (needs REPLICA IDENTITY FULL on the source table;
                                            # newest needs track_commit_timestamp in the target)

A reverse mapping (rollout: cube database → legacy) says source.side: cube and
targets the legacy database; see docs/rollout.md.`

// loadMappingURLs loads the mapping and the database URLs it names.
func loadMappingURLs(path string) (*consumers.Mapping, string, map[string]string, error) {
	if path == "" {
		return nil, "", nil, &process.EnvError{Var: "SHADOWCUBE_MAPPING_FILE", Msg: "required (or --mapping FILE): the mapping file"}
	}
	m, err := consumers.LoadMapping(path)
	if err != nil {
		return nil, "", nil, err
	}
	src := os.Getenv(m.Source.DatabaseURLEnv)
	if src == "" {
		return nil, "", nil, &process.EnvError{Var: m.Source.DatabaseURLEnv, Msg: "required by " + path + ": the legacy (source) PostgreSQL URL"}
	}
	urls := map[string]string{}
	for _, t := range m.Targets {
		urls[t.Name] = os.Getenv(t.DatabaseURLEnv)
	}
	return m, src, urls, nil
}

func newSyncCmd() *cobra.Command {
	var e syncEnv
	var mapping string
	var targets []string
	var maxBatch int
	var seqInterval time.Duration
	var seqOnce bool
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Apply the CDC stream to each cube's PostgreSQL database through the mapping",
		Long: `sync consumes the JetStream stream CDC with one durable consumer per target
(sync-<target>) and applies every legacy transaction to the cube database:
transformed by the mapping's SQL expressions, whole, in commit order, many
small source transactions batched into one target transaction. Each target
transaction begins with pg_logical_emit_message(true, 'shadowcube.origin',
<slot>) and stores the last applied commit LSN in shadowcube.applied (created
when missing), so duplicates, redeliveries and replays change nothing; the
JetStream messages are acknowledged only after the commit.

At start-up the mapping is validated against both databases (tables, columns,
expressions type-checked by the target, unique index on the key).
Transient errors (connection loss, database restart, serialization failure,
deadlock) are retried with bounded, jittered back-off. A poison transaction
(e.g. a constraint the mapped row violates) is published to dlq.sync (stream
DLQ) with the error; on_poison: stop halts that target until the transaction
is resolved (shadowcube dlq replay, or a restart with a fixed mapping),
on_poison: skip carries on. The watermark (LSN and commit time of the last
applied source transaction) is written to the JetStream KV bucket shadowcube,
key sync-watermark.<target>, a few times per second.

Sequences: logical replication copies rows, not sequence positions. sync
moves every cube sequence that feeds a mapped column (serial, identity, or a
nextval default on an integer column) past the values in use: the source
sequence's last value when the column copies a sequence-fed source column,
and the cube column's largest value in any case. It does so at start, when a
target has applied its initial copy, every --sequence-interval, and once on
demand with --sequences (then exits). A cube sequence is never moved
backwards, and it stays on its own lattice (values equal to its current one
modulo its increment). reconcile reports a sequence behind its column's
largest value as a difference.

Keeping ids apart while both sides write: until cutover only legacy writes
and sync keeps the cube's sequences ahead of legacy's. If the cube writes
rows of its own before cutover (replayed creates, dual writes), give them ids
legacy can never take: a separate range (a cube sequence starting far above
legacy's, e.g. START 1000000000000, which sync then never needs to move; a
range below legacy's does not work, sync would move it up into legacy's), an
interleaved one (the same INCREMENT on both sides, different START: legacy
odd, cube even; sync keeps the cube's residue), or UUID keys. Never let both
sides draw from overlapping ranges of one counter.

Flags (each overrides its environment variable):
  --mapping FILE    SHADOWCUBE_MAPPING_FILE   mapping file (required)
  --target NAME     SHADOWCUBE_SYNC_TARGETS   sync only these targets (repeatable; env: comma list)
  --max-batch N     SHADOWCUBE_SYNC_MAX_BATCH most source events per target transaction (5000; at least 1)
  --sequence-interval D  SHADOWCUBE_SYNC_SEQUENCE_INTERVAL  how often cube sequences are moved (30s; at least 1s)
  --sequences       move the cube sequences once, print what moved, and exit (needs no NATS)

Environment:
  SHADOWCUBE_SOURCE_DATABASE_URL  legacy PostgreSQL (or the variable named by the mapping's
                                  source.database_url_env), to validate the mapping
  <target database_url_env>       each target's cube database URL, e.g. SAJU_CUBE_DATABASE_URL
  SHADOWCUBE_SYNC_ACK_WAIT        JetStream ack wait of the consumers (5m; at least 1s)
  SHADOWCUBE_SYNC_REORDER_WAIT    how long a transaction that arrived before an earlier one waits for it
                                  (2m; a publish lost in a NATS leader election is stored again later);
                                  then the missing one is a poison transaction (DLQ, policy)
  SHADOWCUBE_SYNC_RETRY_MAX       longest back-off between retries of a transient failure (5s; at least 1ms)

Metrics: shadowcube_sync_lag_seconds{target}, shadowcube_sync_watermark_timestamp_seconds{target},
shadowcube_sync_applied_changes_total{target}, shadowcube_sync_applied_transactions_total{target},
shadowcube_sync_batch_events{target}, shadowcube_sync_batch_seconds{target},
shadowcube_sync_retries_total{target}, shadowcube_sync_dlq_total{target}, shadowcube_sync_dlq_depth,
shadowcube_sync_stopped{target}, shadowcube_sync_duplicates_skipped_total{target},
shadowcube_sync_sequence_passes_total{target,reason}, shadowcube_sync_sequences_advanced_total{target},
shadowcube_sync_sequence_errors_total{target}, shadowcube_sync_snapshot_in_progress{target}.
` + mappingHelp + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := process.Load(&e); err != nil {
				return err
			}
			if cmd.Flags().Changed("mapping") {
				e.MappingFile = mapping
			}
			only := splitList(e.Targets)
			if cmd.Flags().Changed("target") {
				only = targets
			}
			if cmd.Flags().Changed("max-batch") {
				e.MaxBatch = maxBatch
			}
			if cmd.Flags().Changed("sequence-interval") {
				e.SeqInterval = seqInterval
			}
			if err := e.check(cmd); err != nil {
				return err
			}
			m, src, urls, err := loadMappingURLs(e.MappingFile)
			if err != nil {
				return err
			}
			var known []string
			for _, t := range m.Targets {
				known = append(known, t.Name)
			}
			for _, name := range only {
				if m.Target(name) == nil {
					return usageError{fmt.Errorf("--target %s: no such target in %s (known: %s)", name, e.MappingFile, strings.Join(known, ", "))}
				}
			}
			if seqOnce {
				return syncSequencesOnce(cmd, m, src, urls, only)
			}
			ctx, env, err := setup(cmd, "sync", true)
			if err != nil {
				return err
			}
			defer env.Close()
			conn, err := env.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			s, err := consumers.New(consumers.Config{Mapping: m, SourceURL: src, TargetURLs: urls, Only: only,
				MaxBatch: e.MaxBatch, AckWait: e.AckWait, RetryMax: e.RetryMax, SequenceInterval: e.SeqInterval, ReorderWait: e.ReorderWait},
				consumers.Deps{JetStream: conn.JS, Logger: env.Log, Registerer: env.Reg})
			if err != nil {
				return err
			}
			defer s.Close()
			env.Log.Info("sync starting", "mapping", e.MappingFile)
			if err := s.Run(ctx); err != nil {
				return err
			}
			env.Log.Info("sync stopped")
			return nil
		},
	}
	cmd.Flags().StringVar(&mapping, "mapping", "", "mapping file (SHADOWCUBE_MAPPING_FILE)")
	cmd.Flags().StringArrayVar(&targets, "target", nil, "sync only this target (repeatable; SHADOWCUBE_SYNC_TARGETS)")
	cmd.Flags().IntVar(&maxBatch, "max-batch", 5000, "most source events per target transaction (SHADOWCUBE_SYNC_MAX_BATCH)")
	cmd.Flags().DurationVar(&seqInterval, "sequence-interval", 30*time.Second, "how often cube sequences are moved (SHADOWCUBE_SYNC_SEQUENCE_INTERVAL)")
	cmd.Flags().BoolVar(&seqOnce, "sequences", false, "move the cube sequences once and exit")
	return cmd
}

// syncSequencesOnce is `sync --sequences`: validate the mapping of each
// selected target, move its sequences, print one line per sequence.
func syncSequencesOnce(cmd *cobra.Command, m *consumers.Mapping, src string, urls map[string]string, only []string) error {
	ctx, env, err := setup(cmd, "sync", false)
	if err != nil {
		return err
	}
	defer env.Close()
	srcConn, err := consumers.ConnectSource(ctx, src)
	if err != nil {
		return fmt.Errorf("connect to source database: %w", err)
	}
	defer srcConn.Close(context.Background())
	for _, t := range m.Targets {
		if len(only) > 0 && !slices.Contains(only, t.Name) {
			continue
		}
		if urls[t.Name] == "" {
			return &process.EnvError{Var: t.DatabaseURLEnv, Msg: "required: database URL of target " + t.Name}
		}
		dst, err := consumers.ConnectSource(ctx, urls[t.Name])
		if err != nil {
			return fmt.Errorf("connect to target %s: %w", t.Name, err)
		}
		var ps []consumers.SequencePosition
		err = m.Validate(ctx, t, srcConn, dst)
		if err == nil {
			ps, err = consumers.SyncSequences(ctx, t, srcConn, dst)
		}
		dst.Close(context.Background())
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
