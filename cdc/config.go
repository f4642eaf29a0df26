package cdc

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/heal7/shadowcube/internal/natsx"
)

// Heartbeat modes (Config.HeartbeatMode).
const (
	// HeartbeatTable upserts a row of a tiny table in the source every
	// Heartbeat interval; the table is in the publication, so heartbeats flow
	// through the stream like any change and let consumers advance their
	// freshness watermark while legacy is idle. The table lives in
	// shadowcube's own schema (DefaultHeartbeatTable), never in a user
	// schema: cdc creates the schema "shadowcube" when it is missing.
	HeartbeatTable = "table"
	// HeartbeatMessage emits a non-transactional logical message; it only
	// lets the slot advance, nothing is published.
	HeartbeatMessage = "message"
	// HeartbeatOff disables heartbeats.
	HeartbeatOff = "off"
)

// DefaultHeartbeatTable is the heartbeat table of mode table unless
// configured: in a schema of shadowcube's own, so an API generated from the
// user's schemas (GraphQL or REST over PostgreSQL) never shows it.
const DefaultHeartbeatTable = OwnSchema + ".heartbeat"

// OwnSchema is the schema cdc creates (when missing) for its heartbeat
// table. A heartbeat table in any other schema needs that schema to exist.
const OwnSchema = "shadowcube"

// OriginPrefix is the prefix of the transactional logical message that marks
// a transaction written by shadowcube's sync stage:
// pg_logical_emit_message(true, 'shadowcube.origin', '<origin>').
const OriginPrefix = "shadowcube.origin"

// Config configures a Reader. Zero values take the defaults documented on
// each field.
type Config struct {
	DatabaseURL string   // source PostgreSQL (SHADOWCUBE_SOURCE_DATABASE_URL); required
	Slot        string   // logical slot name; default "shadowcube"
	Publication string   // publication name; default "shadowcube"
	Tables      []string // "schema.table" to create a missing publication for; empty = FOR ALL TABLES
	Resnapshot  bool     // drop the slot and copy every table again

	// IgnoreOrigins drops whole source transactions that carry
	// pg_logical_emit_message(true, OriginPrefix, x) with x in this list
	// (loop prevention for two-way sync).
	IgnoreOrigins []string

	Heartbeat      time.Duration // heartbeat interval; default 1s
	HeartbeatMode  string        // table (default), message or off
	HeartbeatTable string        // default DefaultHeartbeatTable ("shadowcube.heartbeat")

	Window          int           // events published and not yet acknowledged by JetStream; default 4096
	PublishTimeout  time.Duration // a publish not acknowledged within it fails the session; default 10s
	StatusInterval  time.Duration // standby status update interval; default 1s
	SpillThreshold  int64         // bytes of one transaction kept in memory before spilling to disk; default 16 MiB
	SpillDir        string        // directory for spill files; default os.TempDir()
	NoStreaming     bool          // do not ask pgoutput to stream large in-progress transactions
	DecodingWorkMem string        // logical_decoding_work_mem for the replication session (e.g. "64MB"); "" = server setting
	SlotCheck       time.Duration // interval of slot health and lag checks; default 10s
	RetryMax        time.Duration // longest back-off between session retries; default 30s
	// StartupTimeout bounds the one attempt to reach the source at start-up
	// (SHADOWCUBE_STARTUP_TIMEOUT): Run fails when the source cannot be
	// reached within it. Once the source was reached, failures are retried
	// with back-off, each connect attempt bounded by it. Default 10s.
	StartupTimeout time.Duration

	Stream StreamSettings // settings of the CDC stream
}

// StreamSettings are the limits of the CDC stream (retention, size, age,
// replicas); cdc owns the stream and applies them at start-up.
type StreamSettings = natsx.StreamSettings

var (
	slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	pubName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)
)

// withDefaults validates cfg and fills in defaults. Errors name the field.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DatabaseURL (SHADOWCUBE_SOURCE_DATABASE_URL) is required"))
	}
	if c.Slot == "" {
		c.Slot = "shadowcube"
	}
	if !slotName.MatchString(c.Slot) {
		errs = append(errs, fmt.Errorf("slot %q: a replication slot name has 1 to 63 lower-case letters, digits or underscores", c.Slot))
	}
	if c.Publication == "" {
		c.Publication = "shadowcube"
	}
	if !pubName.MatchString(c.Publication) {
		errs = append(errs, fmt.Errorf("publication %q: want a plain identifier (letters, digits, _ and $)", c.Publication))
	}
	for _, t := range c.Tables {
		if _, _, ok := splitTable(t); !ok {
			errs = append(errs, fmt.Errorf("table %q: want schema.table", t))
		}
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("heartbeat interval %s: must be positive", c.Heartbeat))
	}
	switch c.HeartbeatMode {
	case "":
		c.HeartbeatMode = HeartbeatTable
	case HeartbeatTable, HeartbeatMessage, HeartbeatOff:
	default:
		errs = append(errs, fmt.Errorf("heartbeat mode %q: want table, message or off", c.HeartbeatMode))
	}
	if c.HeartbeatTable == "" {
		c.HeartbeatTable = DefaultHeartbeatTable
	}
	if _, _, ok := splitTable(c.HeartbeatTable); !ok {
		errs = append(errs, fmt.Errorf("heartbeat table %q: want schema.table", c.HeartbeatTable))
	}
	if c.Window == 0 {
		c.Window = 4096
	}
	if c.Window < 1 {
		errs = append(errs, fmt.Errorf("window %d: must be at least 1", c.Window))
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = time.Second
	}
	if c.SpillThreshold == 0 {
		c.SpillThreshold = 16 << 20
	}
	if c.SpillThreshold < 0 {
		errs = append(errs, fmt.Errorf("spill threshold %d: must be positive", c.SpillThreshold))
	}
	if c.SpillDir == "" {
		c.SpillDir = os.TempDir()
	}
	if c.SlotCheck == 0 {
		c.SlotCheck = 10 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = 10 * time.Second
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"PublishTimeout", c.PublishTimeout}, {"StatusInterval", c.StatusInterval}, {"SlotCheck", c.SlotCheck}, {"RetryMax", c.RetryMax}, {"StartupTimeout", c.StartupTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.name, d.v))
		}
	}
	return c, errors.Join(errs...)
}

func splitTable(s string) (schema, table string, ok bool) {
	schema, table, ok = strings.Cut(s, ".")
	return schema, table, ok && schema != "" && table != "" && !strings.Contains(table, ".")
}
