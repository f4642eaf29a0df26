package schemas

import (
	"net/http"
	"time"
)

// Version is the version written into every event this build produces.
// Minor bumps add optional fields; a major bump changes meaning and is rejected
// by older decoders.
const Version = "1.0"

// Source says how a request reached the LEGACY_REQUESTS stream.
type Source string

// Sources of captured requests.
const (
	SourceTap        Source = "tap"
	SourceMiddleware Source = "middleware"
	SourceImport     Source = "import"
	SourceSniff      Source = "sniff" // passive capture from the wire (shadowcube sniff)
)

// HTTPResponse is one HTTP answer as captured or replayed. Body holds at most
// the capture cap; BodyTruncated says the real body was longer.
type HTTPResponse struct {
	Status        int           `json:"status"`
	Headers       http.Header   `json:"headers,omitempty"`
	Body          []byte        `json:"body,omitempty"`
	BodyTruncated bool          `json:"body_truncated,omitempty"`
	Latency       time.Duration `json:"latency_ns"`
}

// RequestEvent is one legacy request with the answer the legacy service gave,
// published on legacy.req.<service>.<route>. It never holds the raw user id
// (UserKey is an HMAC of it) nor credentials (Authorization, Cookie and
// configured headers are removed before publishing).
type RequestEvent struct {
	V             string       `json:"v"`
	ID            string       `json:"id"`
	Service       string       `json:"service"`
	Route         string       `json:"route"`
	Method        string       `json:"method"`
	Path          string       `json:"path"`
	Query         string       `json:"query,omitempty"`
	Headers       http.Header  `json:"headers,omitempty"`
	Body          []byte       `json:"body,omitempty"`
	BodyTruncated bool         `json:"body_truncated,omitempty"`
	UserKey       string       `json:"user_key,omitempty"`
	TraceParent   string       `json:"traceparent,omitempty"`
	CapturedAt    time.Time    `json:"captured_at"`
	Source        Source       `json:"source"`
	Response      HTTPResponse `json:"response"`
}

// Op is the kind of a database change.
type Op string

// Change operations. OpSnapshot rows come from the initial copy of a table,
// OpSchema announces a new shape of a table (Columns holds it).
const (
	OpSnapshot Op = "snapshot"
	OpInsert   Op = "insert"
	OpUpdate   Op = "update"
	OpDelete   Op = "delete"
	OpTruncate Op = "truncate"
	OpSchema   Op = "schema"
)

// Column describes one column of a source table as the change was decoded.
// Type is the PostgreSQL type name (format_type), so a consumer can cast the
// exact text value back.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
	OID  uint32 `json:"oid,omitempty"`
	Key  bool   `json:"key,omitempty"`
}

// Row maps column names to values in PostgreSQL's exact text form; a nil value
// is SQL NULL. Numeric, timestamps, bytea (hex), arrays and json are kept as
// the server printed them, never converted through Go types.
type Row map[string]*string

// Truncate details an OpTruncate change. Tables lists every table truncated
// by the one statement as "schema.table".
type Truncate struct {
	Tables          []string `json:"tables"`
	Cascade         bool     `json:"cascade,omitempty"`
	RestartIdentity bool     `json:"restart_identity,omitempty"`
}

// ChangeEvent is one change of one row (or one truncate / schema change) of the
// legacy database, published on cdc.<db>.<schema>.<table>.
//
// CommitLSN, TxID, Index and TxSize place the change in its source
// transaction: consumers apply a transaction only whole (Index 0..TxSize-1) and
// de-duplicate by (Slot, CommitLSN, Index). Unchanged lists TOAST columns whose
// value was not sent and must be left as they are: they are absent from New,
// never NULL. Old holds the old key (or the whole old row under REPLICA
// IDENTITY FULL) when the server sent one, e.g. when an update changed the key.
//
// PrevLSN is the commit LSN of the transaction the same cdc session published
// just before this one (zero for the first of a session, for snapshot rows,
// and from older writers). It lets sync see that an earlier transaction is
// missing at its position in the stream (published again later, after a
// publish lost in a leader election) and wait for it instead of passing it
// (docs/cdc-notes.md, "Order across a lost publish").
type ChangeEvent struct {
	V          string    `json:"v"`
	Slot       string    `json:"slot"`
	DB         string    `json:"db"`
	Schema     string    `json:"schema"`
	Table      string    `json:"table"`
	Op         Op        `json:"op"`
	CommitLSN  LSN       `json:"commit_lsn"`
	TxID       uint32    `json:"tx_id"`
	Index      int       `json:"index"`
	TxSize     int       `json:"tx_size"`
	CommitTime time.Time `json:"commit_time"`
	PrevLSN    LSN       `json:"prev_lsn,omitempty"`
	Columns    []Column  `json:"columns,omitempty"`
	Key        []string  `json:"key,omitempty"`
	New        Row       `json:"new,omitempty"`
	Old        Row       `json:"old,omitempty"`
	Unchanged  []string  `json:"unchanged,omitempty"`
	Truncate   *Truncate `json:"truncate,omitempty"`
}

// Freshness says how fresh the cube's data was when a request was replayed.
// Stale is true when the bounded wait for the cube's sync watermark expired.
type Freshness struct {
	Target    string        `json:"target,omitempty"`
	Watermark time.Time     `json:"watermark,omitempty"`
	Waited    time.Duration `json:"waited_ns"`
	Stale     bool          `json:"stale,omitempty"`
}

// ShadowResult pairs the legacy answer of a captured request with the cube's
// answer to its replay (or the error), published on shadow.result.<service>.<route>.
// Request is the captured request, so the comparator can read its input
// (e.g. birth data) without another lookup; its Response holds only the
// status and latency, the legacy answer itself travels once, as Legacy.
type ShadowResult struct {
	V              string        `json:"v"`
	RequestID      string        `json:"request_id"`
	Service        string        `json:"service"`
	Route          string        `json:"route"`
	Request        RequestEvent  `json:"request"`
	Legacy         HTTPResponse  `json:"legacy"`
	Cube           *HTTPResponse `json:"cube,omitempty"`
	CubeError      string        `json:"cube_error,omitempty"`
	Secondary      *HTTPResponse `json:"secondary,omitempty"`
	SecondaryError string        `json:"secondary_error,omitempty"`
	Freshness      Freshness     `json:"freshness"`
	ReplayedAt     time.Time     `json:"replayed_at"`
	// Operation is the route's operation key for this request (a GraphQL
	// operation name or document hash, or a value read from the body), so
	// signatures, noise statistics and reports group by operation on
	// single-endpoint APIs. Empty when the route defines none.
	Operation string `json:"operation,omitempty"`
	// Skipped names the policy reason a request was not replayed (for
	// example "write", "legacy-unauthorized"); Cube and CubeError are then
	// empty. Skipped results are counted, never compared.
	Skipped string `json:"skipped,omitempty"`
	// LegacyRecheck is legacy's answer to the same side-effect-free request
	// asked again at replay time, sent when the cube's answer differed from
	// the captured one; a recheck equal to the cube's answer means the data
	// moved on after capture (tag moved-on), not a cube fault.
	LegacyRecheck *HTTPResponse `json:"legacy_recheck,omitempty"`
}

// DiffKind classifies one difference between a legacy and a cube answer.
type DiffKind string

// Kinds of differences.
const (
	DiffChanged DiffKind = "changed"
	DiffMissing DiffKind = "missing"
	DiffExtra   DiffKind = "extra"
	DiffType    DiffKind = "type"
	DiffOrder   DiffKind = "order"
)

// Diff is one differing place: Path is a JSONPath-like location ("$.pillars.day"
// or "status"); Legacy and Cube are JSON values (absent on missing/extra).
type Diff struct {
	Path   string   `json:"path"`
	Legacy RawJSON  `json:"legacy,omitempty"`
	Cube   RawJSON  `json:"cube,omitempty"`
	Kind   DiffKind `json:"kind"`
}

// Severity ranks a mismatch for analysts and the gate.
type Severity string

// Severities, from harmless to blocking.
const (
	SeverityInfo     Severity = "info"
	SeverityMinor    Severity = "minor"
	SeverityMajor    Severity = "major"
	SeverityCritical Severity = "critical"
)

// Mismatch is the comparator's verdict on one pair whose answers differ.
// Signature groups mismatches with the same route, differing paths and cause.
type Mismatch struct {
	V         string   `json:"v"`
	RequestID string   `json:"request_id"`
	Service   string   `json:"service"`
	Route     string   `json:"route"`
	Diffs     []Diff   `json:"diffs"`
	Causes    []string `json:"causes,omitempty"`
	Severity  Severity `json:"severity"`
	Signature string   `json:"signature,omitempty"`
	Noise     bool     `json:"noise,omitempty"`
}
