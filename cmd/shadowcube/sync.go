package main

import (
	"fmt"
	"os"
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
	AckWait     time.Duration `envconfig:"SYNC_ACK_WAIT" min:"1ms" default:"5m"`
	RetryMax    time.Duration `envconfig:"SYNC_RETRY_MAX" min:"1ms" default:"5s"`
}

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

Flags (each overrides its environment variable):
  --mapping FILE    SHADOWCUBE_MAPPING_FILE   mapping file (required)
  --target NAME     SHADOWCUBE_SYNC_TARGETS   sync only these targets (repeatable; env: comma list)
  --max-batch N     SHADOWCUBE_SYNC_MAX_BATCH most source events per target transaction (5000)

Environment:
  SHADOWCUBE_SOURCE_DATABASE_URL  legacy PostgreSQL (or the variable named by the mapping's
                                  source.database_url_env), to validate the mapping
  <target database_url_env>       each target's cube database URL, e.g. SAJU_CUBE_DATABASE_URL
  SHADOWCUBE_SYNC_ACK_WAIT        JetStream ack wait of the consumers (5m)
  SHADOWCUBE_SYNC_RETRY_MAX       longest back-off between retries of a transient failure (5s)

Metrics: shadowcube_sync_lag_seconds{target}, shadowcube_sync_watermark_timestamp_seconds{target},
shadowcube_sync_applied_changes_total{target}, shadowcube_sync_applied_transactions_total{target},
shadowcube_sync_batch_events{target}, shadowcube_sync_batch_seconds{target},
shadowcube_sync_retries_total{target}, shadowcube_sync_dlq_total{target}, shadowcube_sync_dlq_depth,
shadowcube_sync_stopped{target}, shadowcube_sync_duplicates_skipped_total{target}.
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
			m, src, urls, err := loadMappingURLs(e.MappingFile)
			if err != nil {
				return err
			}
			for _, name := range only {
				if m.Target(name) == nil {
					return usageError{fmt.Errorf("--target %s: no such target in %s", name, e.MappingFile)}
				}
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
			s, err := consumers.New(ctx, consumers.Config{Mapping: m, SourceURL: src, TargetURLs: urls, Only: only,
				MaxBatch: e.MaxBatch, AckWait: e.AckWait, RetryMax: e.RetryMax}, conn.JS, env.Log, env.Reg)
			if err != nil {
				return err
			}
			defer s.Close()
			env.Log.Info("sync running", "mapping", e.MappingFile, "targets", len(s.Appliers()))
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
	return cmd
}
