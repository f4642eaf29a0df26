package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
)

// cdcEnv is the configuration of `shadowcube cdc`; flags override it.
type cdcEnv struct {
	SourceDatabaseURL string        `envconfig:"SOURCE_DATABASE_URL"`
	Slot              string        `envconfig:"CDC_SLOT" default:"shadowcube"`
	Publication       string        `envconfig:"CDC_PUBLICATION" default:"shadowcube"`
	Tables            string        `envconfig:"CDC_TABLES"`
	Resnapshot        bool          `envconfig:"CDC_RESNAPSHOT"`
	IgnoreOrigins     string        `envconfig:"CDC_IGNORE_ORIGINS"`
	Heartbeat         time.Duration `envconfig:"CDC_HEARTBEAT" min:"1ms" default:"1s"`
	HeartbeatMode     string        `envconfig:"CDC_HEARTBEAT_MODE" default:"table"`
	HeartbeatTable    string        `envconfig:"CDC_HEARTBEAT_TABLE" default:"shadowcube.heartbeat"`
	Window            int           `envconfig:"CDC_WINDOW" min:"1" default:"4096"`
	PublishTimeout    time.Duration `envconfig:"CDC_PUBLISH_TIMEOUT" min:"1ms" default:"10s"`
	StatusInterval    time.Duration `envconfig:"CDC_STATUS_INTERVAL" min:"1ms" default:"1s"`
	SpillThreshold    int64         `envconfig:"CDC_SPILL_THRESHOLD" min:"1" default:"16777216"`
	SpillDir          string        `envconfig:"CDC_SPILL_DIR"`
	NoStreaming       bool          `envconfig:"CDC_NO_STREAMING"`
	DecodingWorkMem   string        `envconfig:"CDC_DECODING_WORK_MEM"`
	SlotCheck         time.Duration `envconfig:"CDC_SLOT_CHECK" min:"1ms" default:"10s"`
	StreamMaxAge      time.Duration `envconfig:"CDC_STREAM_MAX_AGE" min:"0s" default:"0"`
	StreamMaxBytes    int64         `envconfig:"CDC_STREAM_MAX_BYTES" min:"0" default:"0"`
	StreamReplicas    int           `envconfig:"CDC_STREAM_REPLICAS" min:"1" max:"5" default:"1"`
	StreamStorage     string        `envconfig:"CDC_STREAM_STORAGE" default:"file"`
	StreamDuplicates  time.Duration `envconfig:"CDC_STREAM_DUPLICATES" min:"1ms" default:"2m"`
}

func newCDCCmd() *cobra.Command {
	var e cdcEnv
	var resnapshot bool
	cmd := &cobra.Command{
		Use:   "cdc",
		Short: "Stream the legacy PostgreSQL database's changes into the JetStream stream CDC",
		Long: `cdc reads every committed change of the source database through logical
replication (pgoutput, protocol v2) and publishes one ChangeEvent per change to
the JetStream stream CDC on cdc.<db>.<schema>.<table>.

Set-up (every start): checks wal_level = logical, the REPLICATION privilege and
that every published table has a primary key or REPLICA IDENTITY FULL; creates
the schema shadowcube and its heartbeat table (mode table) and the publication
when missing (FOR TABLE the configured tables plus the heartbeat table, or FOR
ALL TABLES) and a persistent pgoutput slot. Nothing is created in your own
schemas.
On the first start (or --resnapshot) the slot is created with an exported
snapshot and every published table is copied inside it (op=snapshot events),
then changes stream from the slot's consistent point: nothing missed or
doubled. A crash mid-snapshot restarts the snapshot from scratch. The state of
the slot is kept in the NATS KV bucket shadowcube_cdc: if the slot later
disappears or is invalidated (wal_status = lost) cdc stops with an error
telling you to re-snapshot; it never recreates a slot silently.

Each event carries commit LSN, tx id, index and size in its transaction and
commit time; Nats-Msg-Id is <slot>:<commit LSN>:<index> (snapshot:
<slot>:snapshot:<consistent point>:<index>). Transactions are buffered until
commit (spilled to a temporary file past the spill threshold); events are
published asynchronously in a bounded window, and PostgreSQL is told an LSN
only once JetStream stored every event up to it. Values keep PostgreSQL's
exact text form (TimeZone=UTC, DateStyle=ISO, bytea hex, extra_float_digits=3).
Truncate is published as one event per truncated table.

Start-up makes one attempt, bounded by SHADOWCUBE_STARTUP_TIMEOUT (10s), to reach
NATS and the source database, and exits with an error naming the (redacted)
address when either cannot be reached. Once started, a lost source or NATS
connection is retried with back-off, one WARN line per attempt
(shadowcube_cdc_session_failures_total, shadowcube_nats_reconnect_attempts_total).
Passwords in URLs are never logged.

Flags (each overrides its environment variable):
  --resnapshot   SHADOWCUBE_CDC_RESNAPSHOT   drop the slot and copy every table again (false)

Environment:
  SHADOWCUBE_SOURCE_DATABASE_URL  source PostgreSQL URL (required)
  SHADOWCUBE_CDC_SLOT             logical slot name (shadowcube)
  SHADOWCUBE_CDC_PUBLICATION      publication name (shadowcube)
  SHADOWCUBE_CDC_TABLES           comma list of schema.table to create the publication for
                                  when it is missing (empty: FOR ALL TABLES)
  SHADOWCUBE_CDC_IGNORE_ORIGINS   comma list of origins: transactions carrying
                                  pg_logical_emit_message(true, 'shadowcube.origin', <origin>)
                                  with one of them are dropped (two-way sync loop prevention)
  SHADOWCUBE_CDC_HEARTBEAT        heartbeat interval (1s)
  SHADOWCUBE_CDC_HEARTBEAT_MODE   table: upsert a row of the heartbeat table (published like any
                                  change, lets consumers advance their watermark when legacy is
                                  idle); message: pg_logical_emit_message(false, ...), no table at
                                  all (only advances the slot; sync watermarks then move only with
                                  legacy's own changes); off (table)
  SHADOWCUBE_CDC_HEARTBEAT_TABLE  heartbeat table of mode table, created when missing
                                  (shadowcube.heartbeat: cdc creates the schema shadowcube, so
                                  nothing appears in your own schemas; a table in another schema
                                  needs that schema to exist)
  SHADOWCUBE_CDC_WINDOW           events in flight to JetStream at most (4096)
  SHADOWCUBE_CDC_PUBLISH_TIMEOUT  a publish not acknowledged within it restarts the session from
                                  the last durable LSN (10s)
  SHADOWCUBE_CDC_STATUS_INTERVAL  standby status update interval (1s)
  SHADOWCUBE_CDC_SPILL_THRESHOLD  bytes of one transaction held in memory before spilling to disk (16777216)
  SHADOWCUBE_CDC_SPILL_DIR        directory of spill files (system temp dir)
  SHADOWCUBE_CDC_NO_STREAMING     true: do not ask pgoutput to stream large in-progress transactions (false)
  SHADOWCUBE_CDC_DECODING_WORK_MEM  logical_decoding_work_mem of the replication session, e.g. 64MB
                                  (server setting)
  SHADOWCUBE_CDC_SLOT_CHECK       interval of slot health and retained-WAL checks (10s)
  SHADOWCUBE_CDC_STREAM_MAX_AGE, SHADOWCUBE_CDC_STREAM_MAX_BYTES, SHADOWCUBE_CDC_STREAM_REPLICAS,
  SHADOWCUBE_CDC_STREAM_STORAGE (file|memory), SHADOWCUBE_CDC_STREAM_DUPLICATES (2m)
                                  limits of the CDC stream (0 = unlimited)

Metrics (SHADOWCUBE_METRICS_ADDR): shadowcube_cdc_events_total{op},
shadowcube_cdc_published_bytes_total, shadowcube_cdc_publish_seconds,
shadowcube_cdc_inflight_events, shadowcube_cdc_confirmed_lsn, shadowcube_cdc_lag_bytes,
shadowcube_cdc_lag_seconds, shadowcube_cdc_slot_retained_wal_bytes,
shadowcube_cdc_snapshot_rows_total{table}, shadowcube_cdc_snapshot_tables(_done), and more.` + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := process.Load(&e); err != nil {
				return err
			}
			if err := storageValue("SHADOWCUBE_CDC_STREAM_STORAGE", e.StreamStorage); err != nil {
				return err
			}
			if cmd.Flags().Changed("resnapshot") {
				e.Resnapshot = resnapshot
			}
			if e.SourceDatabaseURL == "" {
				return &process.EnvError{Var: "SHADOWCUBE_SOURCE_DATABASE_URL", Msg: "required: the legacy PostgreSQL URL, e.g. postgres://user@host:5432/db"}
			}
			ctx, env, err := setup(cmd, "cdc", true)
			if err != nil {
				return err
			}
			defer env.Close()
			conn, err := env.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			startup, _ := env.Common.StartupTimeout() // validated by setup
			r, err := cdc.New(cdc.Config{
				DatabaseURL: e.SourceDatabaseURL, Slot: e.Slot, Publication: e.Publication,
				Tables: splitList(e.Tables), Resnapshot: e.Resnapshot, IgnoreOrigins: splitList(e.IgnoreOrigins),
				Heartbeat: e.Heartbeat, HeartbeatMode: e.HeartbeatMode, HeartbeatTable: e.HeartbeatTable,
				Window: e.Window, PublishTimeout: e.PublishTimeout, StatusInterval: e.StatusInterval,
				SpillThreshold: e.SpillThreshold, SpillDir: e.SpillDir, NoStreaming: e.NoStreaming,
				DecodingWorkMem: e.DecodingWorkMem, SlotCheck: e.SlotCheck, StartupTimeout: startup,
				Stream: natsx.StreamSettings{MaxAge: e.StreamMaxAge, MaxBytes: e.StreamMaxBytes, Replicas: e.StreamReplicas,
					Storage: e.StreamStorage, Duplicates: e.StreamDuplicates},
			}, cdc.Deps{JetStream: conn.JS, Logger: env.Log, Registerer: env.Reg})
			if err != nil {
				return err
			}
			if err := r.Run(ctx); err != nil {
				return err
			}
			env.Log.Info("cdc stopped")
			return nil
		},
	}
	cmd.Flags().BoolVar(&resnapshot, "resnapshot", false, "drop the slot and copy every table again (SHADOWCUBE_CDC_RESNAPSHOT)")
	return cmd
}
