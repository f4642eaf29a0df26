package cdc

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/pgsession"
)

// Errors of the set-up and slot checks. They stop the Reader: fix the cause
// (the message says how) and start it again.
var (
	// ErrWALLevel: the source's wal_level is not logical.
	ErrWALLevel = errors.New("source wal_level is not logical")
	// ErrPrivilege: the role lacks a privilege the reader needs.
	ErrPrivilege = errors.New("missing privilege on the source")
	// ErrNoKey: a published table has neither a primary key nor a usable
	// REPLICA IDENTITY, so updates and deletes cannot be identified.
	ErrNoKey = errors.New("published table without key")
	// ErrMissingSchema: the schema of the configured heartbeat table does
	// not exist (cdc creates only its own schema, OwnSchema).
	ErrMissingSchema = errors.New("schema missing on the source")
	// ErrPublication: the publication is missing tables or cannot be made.
	ErrPublication = errors.New("publication problem")
	// ErrSlotLost: the slot was invalidated (wal_status = lost) or dropped
	// after this reader streamed from it; changes were lost. Re-snapshot.
	ErrSlotLost = errors.New("replication slot lost")
	// ErrSlotState: the slot exists but this reader has no record of the
	// snapshot it was created for (or the slot is not a pgoutput slot of this
	// database).
	ErrSlotState = errors.New("replication slot in an unknown state")
)

// fatalError marks errors that retrying cannot fix.
type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

func fatal(err error) error { return &fatalError{err} }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func (r *Reader) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(r.cfg.DatabaseURL)
	if err != nil {
		return nil, fatal(parseError(err))
	}
	pgsession.Apply(cfg.RuntimeParams) // every value printed alike by the snapshot and pgoutput
	cfg.RuntimeParams["application_name"] = "shadowcube-cdc-" + r.cfg.Slot
	cctx, cancel := r.connectCtx(ctx)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to source %s: %w", redactURL(r.cfg.DatabaseURL), err)
	}
	return conn, nil
}

func (r *Reader) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(r.cfg.DatabaseURL)
	if err != nil {
		return nil, fatal(parseError(err))
	}
	pgsession.Apply(cfg.RuntimeParams) // every value printed alike by the snapshot and pgoutput
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "shadowcube-cdc-" + r.cfg.Slot
	if r.cfg.DecodingWorkMem != "" {
		cfg.RuntimeParams["logical_decoding_work_mem"] = r.cfg.DecodingWorkMem
	}
	cctx, cancel := r.connectCtx(ctx)
	defer cancel()
	conn, err := pgconn.ConnectConfig(cctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return nil, fatal(fmt.Errorf("%w: replication connection to %s: %v: grant it with ALTER ROLE <role> WITH REPLICATION",
				ErrPrivilege, redactURL(r.cfg.DatabaseURL), err))
		}
		return nil, fmt.Errorf("replication connection to source %s: %w", redactURL(r.cfg.DatabaseURL), err)
	}
	return conn, nil
}

// connectCtx bounds one connection attempt: by the start-up deadline until
// the source was reached once, by StartupTimeout afterwards.
func (r *Reader) connectCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if !r.sourceReady.Load() && !r.startBy.IsZero() {
		return context.WithDeadline(ctx, r.startBy)
	}
	return context.WithTimeout(ctx, r.cfg.StartupTimeout)
}

// checkSource verifies wal_level, privileges, publication and keys, and
// creates the heartbeat table and the publication when missing.
func (r *Reader) checkSource(ctx context.Context, conn *pgx.Conn) error {
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fatal(fmt.Errorf("%w: wal_level = %s; set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL", ErrWALLevel, walLevel))
	}
	var role string
	var repl, super bool
	if err := conn.QueryRow(ctx, "SELECT current_user, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&role, &repl, &super); err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	if !repl && !super {
		return fatal(fmt.Errorf("%w: role %s has no REPLICATION attribute; run ALTER ROLE %s WITH REPLICATION", ErrPrivilege, role, pgx.Identifier{role}.Sanitize()))
	}
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&r.db); err != nil {
		return fmt.Errorf("read current database: %w", err)
	}
	if r.cfg.HeartbeatMode == HeartbeatTable {
		if err := r.ensureHeartbeatTable(ctx, conn, role); err != nil {
			return err
		}
	}
	if err := r.ensurePublication(ctx, conn); err != nil {
		return err
	}
	return r.checkKeys(ctx, conn)
}

// ensureHeartbeatTable creates the heartbeat table when missing, and its
// schema when that is shadowcube's own (OwnSchema). Existing objects are
// looked up first: CREATE ... IF NOT EXISTS checks the CREATE privilege
// before it looks, and would fail for a role that may use what an
// administrator made for it.
func (r *Reader) ensureHeartbeatTable(ctx context.Context, conn *pgx.Conn, role string) error {
	schema, table, _ := splitTable(r.cfg.HeartbeatTable)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("look up schema %s: %w", schema, err)
	}
	schemaIdent := pgx.Identifier{schema}.Sanitize()
	if !exists && schema != OwnSchema {
		return fatal(fmt.Errorf("%w: schema %s of the heartbeat table %s does not exist: create it (CREATE SCHEMA %s AUTHORIZATION %s), set SHADOWCUBE_CDC_HEARTBEAT_TABLE to a table in an existing schema (default %s, in a schema cdc creates), or use heartbeat mode message",
			ErrMissingSchema, schemaIdent, r.cfg.HeartbeatTable, schemaIdent, pgx.Identifier{role}.Sanitize(), DefaultHeartbeatTable))
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schemaIdent); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P06" { // created meanwhile
				exists = true
			} else if errors.As(err, &pgErr) && pgErr.Code == "42501" {
				return fatal(fmt.Errorf("%w: create schema %s for the heartbeat table: %v: grant it with GRANT CREATE ON DATABASE %s TO %s, or have an administrator run CREATE SCHEMA %s AUTHORIZATION %s; or use heartbeat mode message",
					ErrPrivilege, schemaIdent, err, pgx.Identifier{r.db}.Sanitize(), pgx.Identifier{role}.Sanitize(), schemaIdent, pgx.Identifier{role}.Sanitize()))
			} else {
				return fatal(fmt.Errorf("create schema %s for the heartbeat table: %w", schemaIdent, err))
			}
		}
		if !exists {
			r.log.Info("created schema for the heartbeat table", "schema", schema)
		}
	}
	var found bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", r.heartbeatIdent()).Scan(&found); err != nil {
		return fmt.Errorf("look up heartbeat table %s: %w", r.cfg.HeartbeatTable, err)
	}
	if found {
		return nil
	}
	_, err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (slot text PRIMARY KEY, beat_at timestamptz NOT NULL)", r.heartbeatIdent()))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		r.log.Info("created heartbeat table", "table", schema+"."+table)
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "3F000":
		return fatal(fmt.Errorf("%w: create heartbeat table %s: %v: create the schema, or use heartbeat mode message", ErrMissingSchema, r.cfg.HeartbeatTable, err))
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return fatal(fmt.Errorf("%w: create heartbeat table %s: %v: run GRANT CREATE ON SCHEMA %s TO %s, or create the table yourself (slot text PRIMARY KEY, beat_at timestamptz NOT NULL), or use heartbeat mode message",
			ErrPrivilege, r.cfg.HeartbeatTable, err, schemaIdent, pgx.Identifier{role}.Sanitize()))
	default:
		return fatal(fmt.Errorf("create heartbeat table %s: %w", r.cfg.HeartbeatTable, err))
	}
}

func (r *Reader) heartbeatIdent() string {
	s, t, _ := splitTable(r.cfg.HeartbeatTable)
	return pgx.Identifier{s, t}.Sanitize()
}

func (r *Reader) ensurePublication(ctx context.Context, conn *pgx.Conn) error {
	pub := pgx.Identifier{r.cfg.Publication}.Sanitize()
	var all, ins, upd, del, trunc bool
	err := conn.QueryRow(ctx, "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1",
		r.cfg.Publication).Scan(&all, &ins, &upd, &del, &trunc)
	if errors.Is(err, pgx.ErrNoRows) {
		var stmt string
		if len(r.cfg.Tables) == 0 {
			stmt = "CREATE PUBLICATION " + pub + " FOR ALL TABLES"
		} else {
			tables := make([]string, 0, len(r.cfg.Tables)+1)
			for _, t := range r.cfg.Tables {
				s, n, _ := splitTable(t)
				tables = append(tables, pgx.Identifier{s, n}.Sanitize())
			}
			if r.cfg.HeartbeatMode == HeartbeatTable {
				tables = append(tables, r.heartbeatIdent())
			}
			stmt = "CREATE PUBLICATION " + pub + " FOR TABLE " + strings.Join(tables, ", ")
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fatal(fmt.Errorf("%w: %s: %v (FOR ALL TABLES needs a superuser, FOR TABLE needs ownership of each table; or have an administrator run it)",
				ErrPublication, stmt, err))
		}
		r.log.Info("created publication", "publication", r.cfg.Publication, "statement", stmt)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication %s: %w", r.cfg.Publication, err)
	}
	if !ins || !upd || !del || !trunc {
		r.log.Warn("publication does not publish every operation; unpublished ones are not captured",
			"publication", r.cfg.Publication, "insert", ins, "update", upd, "delete", del, "truncate", trunc)
	}
	if all {
		return nil
	}
	published := map[string]bool{}
	rows, err := conn.Query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1", r.cfg.Publication)
	if err != nil {
		return fmt.Errorf("read tables of publication %s: %w", r.cfg.Publication, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read tables of publication %s: %w", r.cfg.Publication, err)
	}
	for _, n := range names {
		published[n] = true
	}
	var missing []string
	for _, t := range r.cfg.Tables {
		if !published[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fatal(fmt.Errorf("%w: publication %s exists but does not publish %s: run ALTER PUBLICATION %s ADD TABLE %s, or drop the publication so shadowcube creates it",
			ErrPublication, r.cfg.Publication, strings.Join(missing, ", "), pub, strings.Join(missing, ", ")))
	}
	if r.cfg.HeartbeatMode == HeartbeatTable && !published[r.cfg.HeartbeatTable] {
		stmt := "ALTER PUBLICATION " + pub + " ADD TABLE " + r.heartbeatIdent()
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fatal(fmt.Errorf("%w: add the heartbeat table: %s: %v (run it as the publication owner, or use heartbeat mode message)", ErrPublication, stmt, err))
		}
		r.log.Info("added the heartbeat table to the publication", "publication", r.cfg.Publication, "table", r.cfg.HeartbeatTable)
	}
	return nil
}

func (r *Reader) checkKeys(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT pt.schemaname, pt.tablename, c.relreplident::text,
			EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		FROM pg_publication_tables pt
		JOIN pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		WHERE pt.pubname = $1 ORDER BY 1, 2`, r.cfg.Publication)
	if err != nil {
		return fmt.Errorf("read keys of published tables: %w", err)
	}
	var bad []string
	var schema, table, ident string
	var hasPK bool
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &ident, &hasPK}, func() error {
		if ident == "f" || ident == "i" || (ident == "d" && hasPK) {
			return nil
		}
		id := pgx.Identifier{schema, table}.Sanitize()
		if ident == "n" {
			bad = append(bad, fmt.Sprintf("%s has REPLICA IDENTITY NOTHING (run ALTER TABLE %s REPLICA IDENTITY DEFAULT with a primary key, or FULL)", id, id))
		} else {
			bad = append(bad, fmt.Sprintf("%s has no primary key (add one, or run ALTER TABLE %s REPLICA IDENTITY FULL)", id, id))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read keys of published tables: %w", err)
	}
	if len(bad) > 0 {
		return fatal(fmt.Errorf("%w: %s", ErrNoKey, strings.Join(bad, "; ")))
	}
	return nil
}

// slotInfo is the slot's row of pg_replication_slots.
type slotInfo struct {
	exists    bool
	plugin    string
	database  string
	walStatus string
	temporary bool
	activePID *int32
	confirmed string
}

func (r *Reader) readSlot(ctx context.Context, conn *pgx.Conn) (slotInfo, error) {
	var s slotInfo
	var plugin, database, walStatus, confirmed *string
	err := conn.QueryRow(ctx, `SELECT plugin, database, wal_status, temporary, active_pid, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.Slot).Scan(&plugin, &database, &walStatus, &s.temporary, &s.activePID, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read slot %s: %w", r.cfg.Slot, err)
	}
	s.exists = true
	s.plugin, s.database, s.walStatus, s.confirmed = deref(plugin), deref(database), deref(walStatus), deref(confirmed)
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// slotState is what the reader remembers about its slot, in the NATS KV
// bucket StateBucket: whether its snapshot completed.
type slotState struct {
	Phase           string    `json:"phase"` // snapshotting | streaming
	ConsistentPoint string    `json:"consistent_point"`
	Since           time.Time `json:"since"`
}

const (
	phaseSnapshotting = "snapshotting"
	phaseStreaming    = "streaming"
)

// StateBucket is the NATS KV bucket where readers record the state of their
// slots (one key per source system, database and slot).
const StateBucket = "shadowcube_cdc"

func (r *Reader) stateKey() string {
	return fmt.Sprintf("%s.%s.%s", r.sysID, hex.EncodeToString([]byte(r.db)), r.cfg.Slot)
}

func (r *Reader) loadState(ctx context.Context) (*slotState, error) {
	ctx, cancel := r.apiCtx(ctx)
	defer cancel()
	e, err := r.kv.Get(ctx, r.stateKey())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read slot state %s from KV %s: %w", r.stateKey(), StateBucket, err)
	}
	var s slotState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, fmt.Errorf("decode slot state %s from KV %s: %w", r.stateKey(), StateBucket, err)
	}
	return &s, nil
}

func (r *Reader) saveState(ctx context.Context, s slotState) error {
	data, _ := json.Marshal(s)
	ctx, cancel := r.apiCtx(ctx)
	defer cancel()
	if _, err := r.kv.Put(ctx, r.stateKey(), data); err != nil {
		return fmt.Errorf("write slot state %s to KV %s: %w", r.stateKey(), StateBucket, err)
	}
	return nil
}

// decideSnapshot says whether this start must (re)create the slot and copy
// every table, or fails loudly when the slot was lost.
func (r *Reader) decideSnapshot(ctx context.Context, meta *pgx.Conn, resnapshot bool) (bool, error) {
	slot, err := r.readSlot(ctx, meta)
	if err != nil {
		return false, err
	}
	state, err := r.loadState(ctx)
	if err != nil {
		return false, err
	}
	if slot.exists {
		if slot.plugin != "pgoutput" || slot.database != r.db || slot.temporary {
			return false, fatal(fmt.Errorf("%w: slot %s uses plugin %q on database %q (temporary %v); shadowcube needs a persistent pgoutput slot on %q: choose another slot name (SHADOWCUBE_CDC_SLOT) or drop it",
				ErrSlotState, r.cfg.Slot, slot.plugin, slot.database, slot.temporary, r.db))
		}
	}
	if resnapshot {
		return true, nil
	}
	switch {
	case slot.exists && slot.walStatus == "lost":
		return false, fatal(fmt.Errorf("%w: slot %s was invalidated (wal_status = lost, max_slot_wal_keep_size exceeded): changes are gone; restart with --resnapshot to copy every table again", ErrSlotLost, r.cfg.Slot))
	case slot.exists && state != nil && state.Phase == phaseStreaming:
		return false, nil
	case slot.exists && state != nil && state.Phase == phaseSnapshotting:
		r.log.Warn("the previous snapshot did not finish; dropping the slot and copying every table again", "slot", r.cfg.Slot)
		return true, nil
	case slot.exists:
		return false, fatal(fmt.Errorf("%w: slot %s exists but KV bucket %s has no record of its snapshot (key %s): restart with --resnapshot to copy every table again, or drop the slot",
			ErrSlotState, r.cfg.Slot, StateBucket, r.stateKey()))
	case state != nil && state.Phase == phaseStreaming:
		return false, fatal(fmt.Errorf("%w: slot %s is missing but this reader streamed from it since %s (consistent point %s): changes were lost; restart with --resnapshot to copy every table again",
			ErrSlotLost, r.cfg.Slot, state.Since.Format(time.RFC3339), state.ConsistentPoint))
	default:
		return true, nil
	}
}

// createSlot drops the slot if present and creates it with an exported
// snapshot on repl, which must stay open until the snapshot is copied.
func (r *Reader) createSlot(ctx context.Context, repl *pgconn.PgConn, meta *pgx.Conn) (pglogrepl.CreateReplicationSlotResult, error) {
	slot, err := r.readSlot(ctx, meta)
	if err != nil {
		return pglogrepl.CreateReplicationSlotResult{}, err
	}
	if slot.exists {
		if slot.activePID != nil {
			return pglogrepl.CreateReplicationSlotResult{}, fmt.Errorf("slot %s is in use by process %d (another reader?); retrying", r.cfg.Slot, *slot.activePID)
		}
		if err := pglogrepl.DropReplicationSlot(ctx, repl, r.cfg.Slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return pglogrepl.CreateReplicationSlotResult{}, fmt.Errorf("drop slot %s for the new snapshot: %w", r.cfg.Slot, err)
		}
		r.log.Info("dropped slot for a new snapshot", "slot", r.cfg.Slot)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, r.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return res, fmt.Errorf("create slot %s: %w", r.cfg.Slot, err)
	}
	return res, nil
}

// parseError reports a source URL that does not parse without quoting it:
// pgx masks the password, but not other secrets (sslpassword, a token in a
// query parameter).
func parseError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "`: "); strings.HasPrefix(msg, "cannot parse `") && i >= 0 {
		msg = msg[i+3:]
	}
	return fmt.Errorf("source database URL (SHADOWCUBE_SOURCE_DATABASE_URL) cannot be parsed: %s", msg)
}

// redactURL names a source for logs and errors: host, port, database and
// user, never a password or any other parameter.
func redactURL(u string) string {
	cfg, err := pgconn.ParseConfig(u)
	if err != nil {
		return "<unparsable URL>"
	}
	return fmt.Sprintf("host=%s port=%d database=%s user=%s", cfg.Host, cfg.Port, cfg.Database, cfg.User)
}
