package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newCDCCmd() *cobra.Command {
	var e wiring.CDCEnv
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

Metrics (SHADOWCUBE_METRICS_ADDR): shadowcube_cdc_events_total{op},
shadowcube_cdc_published_bytes_total, shadowcube_cdc_publish_seconds,
shadowcube_cdc_inflight_events, shadowcube_cdc_confirmed_lsn, shadowcube_cdc_lag_bytes,
shadowcube_cdc_lag_seconds, shadowcube_cdc_slot_retained_wal_bytes,
shadowcube_cdc_snapshot_rows_total{table}, shadowcube_cdc_snapshot_tables(_done), and more.` +
			wiring.EnvHelp("Environment", &e) + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			cfg, err := e.Config(0)
			if err != nil {
				return err
			}
			ctx, p, err := setup(cmd, "cdc", true)
			if err != nil {
				return err
			}
			defer p.Close()
			conn, err := p.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			cfg.StartupTimeout = p.StartupTimeout()
			r, err := wiring.NewCDC(p, conn, cfg)
			if err != nil {
				return err
			}
			defer r.Close()
			if err := r.Run(ctx); err != nil {
				return err
			}
			p.Log.Info("cdc stopped")
			return nil
		},
	}
	wiring.BindFlags(cmd.Flags(), &e)
	return cmd
}
