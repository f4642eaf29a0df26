package main

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/wiring"
)

const mappingHelp = `
Mapping file (YAML; errors name file, line, table and column):
  source: {database_url_env: SHADOWCUBE_SOURCE_DATABASE_URL, slot: shadowcube}
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
                                            # source commit time)`

func newSyncCmd() *cobra.Command {
	var e wiring.SyncEnv
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

Metrics: shadowcube_sync_lag_seconds{target}, shadowcube_sync_watermark_timestamp_seconds{target},
shadowcube_sync_applied_changes_total{target}, shadowcube_sync_applied_transactions_total{target},
shadowcube_sync_batch_events{target}, shadowcube_sync_batch_seconds{target},
shadowcube_sync_retries_total{target}, shadowcube_sync_dlq_total{target}, shadowcube_sync_dlq_depth,
shadowcube_sync_stopped{target}, shadowcube_sync_duplicates_skipped_total{target},
shadowcube_sync_sequence_passes_total{target,reason}, shadowcube_sync_sequences_advanced_total{target},
shadowcube_sync_sequence_errors_total{target}, shadowcube_sync_snapshot_in_progress{target}.
` + mappingHelp + wiring.EnvHelp("Environment", &e) + `
  <target database_url_env>       each target's cube database URL` + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			e.Targets = wiring.SplitList(strings.Join(e.Targets, ","))
			m, err := wiring.LoadMapping(e.MappingFile)
			if err != nil {
				return err
			}
			if err := m.CheckTargets(e.Targets); err != nil {
				return err
			}
			if seqOnce {
				return syncSequencesOnce(cmd, m, e.Targets)
			}
			ctx, p, err := setup(cmd, "sync", true)
			if err != nil {
				return err
			}
			defer p.Close()
			conn, err := p.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			s, err := wiring.NewSync(p, conn, &e, m)
			if err != nil {
				return err
			}
			defer s.Close()
			p.Log.Info("sync starting", "mapping", e.MappingFile)
			if err := s.Run(ctx); err != nil {
				return err
			}
			p.Log.Info("sync stopped")
			return nil
		},
	}
	wiring.BindFlags(cmd.Flags(), &e)
	cmd.Flags().BoolVar(&seqOnce, "sequences", false, "move the cube sequences once and exit")
	return cmd
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
