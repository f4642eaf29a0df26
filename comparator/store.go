package comparator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/schemas"
)

// DefaultSchema is the PostgreSQL schema of the mismatch store.
const DefaultSchema = "shadowcube_compare"

// StoreConfig says where the mismatch store lives.
type StoreConfig struct {
	DatabaseURL string // SHADOWCUBE_STORE_DATABASE_URL
	Schema      string // default shadowcube_compare
	MaxConns    int32  // pool size (default 4)
	// Examples is how many example pairs (full answers) are kept per
	// signature (SHADOWCUBE_STORE_EXAMPLES; 0 = default 5, -1 = none).
	Examples int
	// Retention is how long pairs are kept (SHADOWCUBE_STORE_RETENTION;
	// 0 = default 14 days); roll-ups and examples are kept. Prune deletes.
	Retention time.Duration
	// Redact cleans request bodies kept with examples (nil: the default
	// rules: form fields named like secrets).
	Redact *redact.Rules
}

// Store is the mismatch store: every compared pair's verdict, diffs,
// causes, noise flag, timings and AI labels, plus the noise counters. Open
// applies the migrations. Close is idempotent.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	cfg    StoreConfig
	once   sync.Once
	full   sync.Map // signatures known to hold Examples examples
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// migrations are applied in order, each once, recorded in schema_migrations.
// Append only: never edit an applied migration.
var migrations = []string{
	// 1: pairs and noise counters.
	`CREATE TABLE {s}.pairs (
		id                bigserial PRIMARY KEY,
		request_id        text NOT NULL,
		service           text NOT NULL,
		route             text NOT NULL,
		kind              text NOT NULL,
		verdict           text NOT NULL,
		severity          text NOT NULL,
		signature         text,
		accepted          boolean NOT NULL DEFAULT false,
		noise             boolean NOT NULL DEFAULT false,
		stale             boolean NOT NULL DEFAULT false,
		causes            text[] NOT NULL DEFAULT '{}',
		diffs             jsonb NOT NULL DEFAULT '[]',
		noise_diffs       jsonb NOT NULL DEFAULT '[]',
		cube_error        text,
		legacy_status     int,
		cube_status       int,
		legacy_latency_ms double precision,
		cube_latency_ms   double precision,
		captured_at       timestamptz,
		replayed_at       timestamptz NOT NULL,
		compared_at       timestamptz NOT NULL,
		ai_truth          text,
		ai_legacy_label   text,
		ai_cube_label     text,
		ai_legacy_score   double precision,
		ai_cube_score     double precision,
		UNIQUE (request_id, replayed_at)
	);
	CREATE INDEX pairs_route_verdict ON {s}.pairs (service, route, verdict);
	CREATE INDEX pairs_signature ON {s}.pairs (signature) WHERE signature IS NOT NULL;
	CREATE INDEX pairs_causes ON {s}.pairs USING gin (causes);
	CREATE INDEX pairs_compared_at ON {s}.pairs (compared_at);
	CREATE TABLE {s}.route_counts (
		service   text NOT NULL,
		route     text NOT NULL,
		requests  bigint NOT NULL DEFAULT 0,
		baselines bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (service, route)
	);
	CREATE TABLE {s}.noise_counts (
		service text NOT NULL,
		route   text NOT NULL,
		path    text NOT NULL,
		raw     bigint NOT NULL DEFAULT 0,
		noise   bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (service, route, path)
	);`,
	// 2: what a user can look a pair up by (as captured, already redacted),
	// the operation key, and the policy reason of a skipped request.
	`ALTER TABLE {s}.pairs ADD COLUMN method text, ADD COLUMN path text, ADD COLUMN operation text, ADD COLUMN skipped text;
	CREATE INDEX pairs_request_id ON {s}.pairs (request_id);`,
	// 3: what reports read (store_rollup.go): hourly roll-ups, differing
	// paths per hour, example pairs per signature, reconcile results.
	migrationRollups,
	// 4: analysts' acceptances and their audit (store_accept.go).
	acceptMigration,
	// 5: which replay a pair comes from (Run): a live replay of a request
	// is stored once however often the request is redelivered, a window
	// replay adds a pair each time. NULL: stored before this column, or by
	// a caller that did not say (de-duplicated on the replay time only).
	`ALTER TABLE {s}.pairs ADD COLUMN run text CHECK (run IN ('live', 'window'));
	CREATE UNIQUE INDEX pairs_live_request ON {s}.pairs (request_id) WHERE run = 'live';`,
}

// OpenStore connects and migrates the store.
func OpenStore(ctx context.Context, cfg StoreConfig) (*Store, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("mismatch store: database URL is empty (set SHADOWCUBE_STORE_DATABASE_URL)")
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if cfg.Examples == 0 {
		cfg.Examples = DefaultExamples
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("mismatch store: schema %q: want a lower-case SQL identifier", cfg.Schema)
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("mismatch store: parse database URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 4
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("mismatch store: connect: %w", err)
	}
	s := &Store{pool: pool, schema: cfg.Schema, cfg: cfg}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pool. Idempotent.
func (s *Store) Close() error {
	s.once.Do(s.pool.Close)
	return nil
}

// Schema is the store's PostgreSQL schema.
func (s *Store) Schema() string { return s.schema }

func (s *Store) q(sql string) string {
	return strings.ReplaceAll(sql, "{s}", pgx.Identifier{s.schema}.Sanitize())
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("mismatch store: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	// One migrator at a time across processes.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "shadowcube.compare.migrate."+s.schema); err != nil {
		return fmt.Errorf("mismatch store: migrate lock: %w", err)
	}
	if _, err := tx.Exec(ctx, s.q(`CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
		version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)); err != nil {
		return fmt.Errorf("mismatch store: create schema %s: %w", s.schema, err)
	}
	var have int
	if err := tx.QueryRow(ctx, s.q(`SELECT coalesce(max(version), 0) FROM {s}.schema_migrations`)).Scan(&have); err != nil {
		return fmt.Errorf("mismatch store: read migrations: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("mismatch store: schema %s is at version %d, this build knows %d: upgrade shadowcube", s.schema, have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, s.q(migrations[v-1])); err != nil {
			return fmt.Errorf("mismatch store: migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, s.q(`INSERT INTO {s}.schema_migrations (version) VALUES ($1)`), v); err != nil {
			return fmt.Errorf("mismatch store: record migration %d: %w", v, err)
		}
		if v == rollupsMigration {
			// Pairs stored before the roll-ups existed get theirs now.
			if err := s.backfillRollups(ctx, tx); err != nil {
				return fmt.Errorf("mismatch store: migration %d: %w", v, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("mismatch store: migrate: %w", err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// insertPairs inserts a whole batch in one statement: one array per column,
// unnested into rows (causes travel as JSON arrays, as a text[] per row
// cannot). Far less work for PostgreSQL per pair than a statement per row.
// A row that breaks either unique key is skipped: the same replay stored
// again (request id and replay time), or a second live replay of a request
// whose live pair is stored (redelivered after its pair's commit but
// before its ack).
const insertPairs = `INSERT INTO {s}.pairs (request_id, service, route, kind, verdict, severity, signature, accepted, noise, stale,
		causes, diffs, noise_diffs, cube_error, legacy_status, cube_status, legacy_latency_ms, cube_latency_ms,
		captured_at, replayed_at, compared_at, ai_truth, ai_legacy_label, ai_cube_label, ai_legacy_score, ai_cube_score,
		method, path, operation, skipped, run)
	SELECT request_id, service, route, kind, verdict, severity, signature, accepted, noise, stale,
		ARRAY(SELECT jsonb_array_elements_text(causes)), diffs, noise_diffs, cube_error, legacy_status, cube_status,
		legacy_latency_ms, cube_latency_ms, captured_at, replayed_at, compared_at,
		ai_truth, ai_legacy_label, ai_cube_label, ai_legacy_score, ai_cube_score, method, path, operation, skipped, run
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $9::bool[], $10::bool[],
		$11::jsonb[], $12::jsonb[], $13::jsonb[], $14::text[], $15::int[], $16::int[], $17::float8[], $18::float8[],
		$19::timestamptz[], $20::timestamptz[], $21::timestamptz[], $22::text[], $23::text[], $24::text[], $25::float8[], $26::float8[],
		$27::text[], $28::text[], $29::text[], $30::text[], $31::text[])
		AS t(request_id, service, route, kind, verdict, severity, signature, accepted, noise, stale,
		causes, diffs, noise_diffs, cube_error, legacy_status, cube_status, legacy_latency_ms, cube_latency_ms,
		captured_at, replayed_at, compared_at, ai_truth, ai_legacy_label, ai_cube_label, ai_legacy_score, ai_cube_score,
		method, path, operation, skipped, run)
	ON CONFLICT DO NOTHING
	RETURNING request_id, replayed_at`

// pairColumns holds a batch column by column, for insertPairs.
type pairColumns struct {
	requestID, service, route, kind, verdict, severity  []string
	signature, cubeError, truth, legacyLabel, cubeLabel []*string
	accepted, noise, stale                              []bool
	causes, diffs, noiseDiffs                           []string
	legacyStatus, cubeStatus                            []*int32
	legacyMS, cubeMS, legacyScore, cubeScore            []*float64
	capturedAt                                          []*time.Time
	method, path, operation, skipped, run               []*string
	replayedAt, comparedAt                              []time.Time
}

func (c *pairColumns) add(o *Outcome, run Run) error {
	diffs, err := jsonArray(o.Diffs)
	if err != nil {
		return fmt.Errorf("save outcome %s: diffs: %w", o.RequestID, err)
	}
	nd, err := jsonArray(o.NoiseDiffs)
	if err != nil {
		return fmt.Errorf("save outcome %s: noise diffs: %w", o.RequestID, err)
	}
	causes, err := jsonArray(o.Causes)
	if err != nil {
		return fmt.Errorf("save outcome %s: causes: %w", o.RequestID, err)
	}
	var truth, ll, cl *string
	var ls, cs *float64
	if o.AI != nil {
		truth, ll, cl = strPtr(o.AI.Truth), strPtr(o.AI.LegacyLabel), strPtr(o.AI.CubeLabel)
		ls, cs = o.AI.LegacyScore, o.AI.CubeScore
	}
	var capt *time.Time
	if !o.CapturedAt.IsZero() {
		capt = &o.CapturedAt
	}
	legacyStatus := int32(o.LegacyStatus)
	var cubeStatus *int32
	if o.Verdict != VerdictError && o.Verdict != VerdictSkipped {
		v := int32(o.CubeStatus)
		cubeStatus = &v
	}
	lms, cms := ms(o.LegacyLatency), ms(o.CubeLatency)
	c.requestID = append(c.requestID, o.RequestID)
	c.service = append(c.service, o.Service)
	c.route = append(c.route, o.Route)
	c.kind = append(c.kind, o.Kind)
	c.verdict = append(c.verdict, string(o.Verdict))
	c.severity = append(c.severity, string(o.Severity))
	c.signature = append(c.signature, strPtr(o.Signature))
	c.accepted = append(c.accepted, o.Accepted)
	c.noise = append(c.noise, len(o.NoiseDiffs) > 0)
	c.stale = append(c.stale, o.Stale)
	c.causes = append(c.causes, causes)
	c.diffs = append(c.diffs, diffs)
	c.noiseDiffs = append(c.noiseDiffs, nd)
	c.cubeError = append(c.cubeError, strPtr(o.CubeError))
	c.legacyStatus = append(c.legacyStatus, &legacyStatus)
	c.cubeStatus = append(c.cubeStatus, cubeStatus)
	c.legacyMS = append(c.legacyMS, &lms)
	c.cubeMS = append(c.cubeMS, &cms)
	c.capturedAt = append(c.capturedAt, capt)
	c.replayedAt = append(c.replayedAt, o.ReplayedAt)
	c.comparedAt = append(c.comparedAt, o.ComparedAt)
	c.truth = append(c.truth, truth)
	c.legacyLabel = append(c.legacyLabel, ll)
	c.cubeLabel = append(c.cubeLabel, cl)
	c.legacyScore = append(c.legacyScore, ls)
	c.cubeScore = append(c.cubeScore, cs)
	c.method = append(c.method, strPtr(o.Method))
	c.path = append(c.path, strPtr(o.Path))
	c.operation = append(c.operation, strPtr(o.Operation))
	c.skipped = append(c.skipped, strPtr(o.Skipped))
	c.run = append(c.run, strPtr(string(run)))
	return nil
}

func (c *pairColumns) args() []any {
	return []any{c.requestID, c.service, c.route, c.kind, c.verdict, c.severity, c.signature, c.accepted, c.noise, c.stale,
		c.causes, c.diffs, c.noiseDiffs, c.cubeError, c.legacyStatus, c.cubeStatus, c.legacyMS, c.cubeMS,
		c.capturedAt, c.replayedAt, c.comparedAt, c.truth, c.legacyLabel, c.cubeLabel, c.legacyScore, c.cubeScore,
		c.method, c.path, c.operation, c.skipped, c.run}
}

// pairKey identifies a stored pair: request id and replay time, at the
// microsecond precision PostgreSQL keeps.
type pairKey struct {
	requestID  string
	replayedAt int64
}

// Run says which replay of a request a pair comes from.
type Run string

const (
	// RunUnknown: the caller does not say (pairs stored before runs were
	// recorded, results published by hand): only the same replay stored
	// again (request id and replay time) is skipped.
	RunUnknown Run = ""
	// RunLive: the live replayer's replay (its durable consumer). A
	// request has one live pair: a later live replay of it (a redelivery
	// after the pair committed but before the request's ack) is skipped.
	RunLive Run = "live"
	// RunWindow: a window replay (`shadow --since/--until`): every one
	// adds a pair, never de-duplicated against the live one.
	RunWindow Run = "window"
)

// RunOf tells the run of a result from the Nats-Msg-Id it was published
// (or handed to a sink) with: the live replayer uses the request id, a
// window replay "<request id>@<replay time>" (schemas.WindowResultMsgID).
// Any other id (or none) is RunUnknown.
func RunOf(requestID, msgID string) Run {
	switch {
	case msgID == "":
		return RunUnknown
	case msgID == requestID:
		return RunLive
	case schemas.IsWindowResultMsgID(requestID, msgID):
		return RunWindow
	}
	return RunUnknown
}

// Save stores a batch of outcomes in one transaction. A pair already stored
// (same request id and replay time: a redelivery) is skipped, and so are its
// noise counts. It returns how many pairs were new.
func (s *Store) Save(ctx context.Context, outs []*Outcome) (int, error) {
	return s.SaveRuns(ctx, outs, nil, nil)
}

// SaveWithAnswers is Save that also keeps example pairs: answers[i] (when
// not nil) is the shadow result outs[i] was compared from; a new pair with
// a signature becomes one of its signature's examples while it has fewer
// than StoreConfig.Examples. Roll-ups are updated in the same transaction.
func (s *Store) SaveWithAnswers(ctx context.Context, outs []*Outcome, answers []*schemas.ShadowResult) (int, error) {
	return s.SaveRuns(ctx, outs, answers, nil)
}

// SaveRuns is SaveWithAnswers that also records which replay each pair
// comes from: runs[i] (RunUnknown when runs is shorter) is outs[i]'s. A
// live pair of a request that already has one is skipped like a
// redelivery: no counts, roll-ups or examples for it.
func (s *Store) SaveRuns(ctx context.Context, outs []*Outcome, answers []*schemas.ShadowResult, runs []Run) (int, error) {
	if len(outs) == 0 {
		return 0, nil
	}
	var cols pairColumns
	for i, o := range outs {
		run := RunUnknown
		if i < len(runs) {
			run = runs[i]
		}
		if err := cols.add(o, run); err != nil {
			return 0, err
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("save outcomes: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, s.q(insertPairs), cols.args()...)
	if err != nil {
		return 0, fmt.Errorf("save %d outcomes: %w", len(outs), err)
	}
	inserted := make(map[pairKey]bool, len(outs))
	var k pairKey
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&k.requestID, &at}, func() error {
		inserted[pairKey{k.requestID, at.UnixMicro()}] = true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("save %d outcomes (first request %s): %w", len(outs), outs[0].RequestID, err)
	}
	fresh := make([]*Outcome, 0, len(inserted))
	var freshAnswers []*schemas.ShadowResult
	for i, o := range outs {
		key := pairKey{o.RequestID, o.ReplayedAt.UnixMicro()}
		if inserted[key] {
			delete(inserted, key) // a duplicate within the batch counts once
			fresh = append(fresh, o)
			if i < len(answers) {
				freshAnswers = append(freshAnswers, answers[i])
			} else {
				freshAnswers = append(freshAnswers, nil)
			}
		}
	}
	if err := s.addCounts(ctx, tx, fresh); err != nil {
		return 0, err
	}
	if err := s.addExamples(ctx, tx, fresh, freshAnswers); err != nil {
		return 0, err
	}
	// Last: the roll-up rows are the ones concurrent comparators share, so
	// their row locks are held for the shortest time.
	if err := s.addRollups(ctx, tx, fresh); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("save outcomes: commit: %w", err)
	}
	return len(fresh), nil
}

// jsonArray is s as a JSON array: "[]" when empty (most pairs: no
// diffs, no causes), without a json.Marshal call.
func jsonArray[T any](s []T) (string, error) {
	if len(s) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(s)
	return string(b), err
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type countKey struct{ service, route, path string }

func (s *Store) addCounts(ctx context.Context, tx pgx.Tx, outs []*Outcome) error {
	routes := map[countKey][2]int64{}
	paths := map[countKey][2]int64{}
	for _, o := range outs {
		if o.Verdict == VerdictSkipped {
			continue
		}
		group := opRoute(o.Route, o.Operation)
		k := countKey{o.Service, group, ""}
		r := routes[k]
		if o.Noise.Request {
			r[0]++
		}
		if o.Noise.Baseline {
			r[1]++
		}
		routes[k] = r
		for _, p := range o.Noise.RawPaths {
			pk := countKey{o.Service, group, p}
			v := paths[pk]
			v[0]++
			paths[pk] = v
		}
		for _, p := range o.Noise.NoisePaths {
			pk := countKey{o.Service, group, p}
			v := paths[pk]
			v[1]++
			paths[pk] = v
		}
	}
	b := &pgx.Batch{}
	for k, v := range routes {
		b.Queue(s.q(`INSERT INTO {s}.route_counts AS c (service, route, requests, baselines) VALUES ($1,$2,$3,$4)
			ON CONFLICT (service, route) DO UPDATE SET requests = c.requests + EXCLUDED.requests, baselines = c.baselines + EXCLUDED.baselines`),
			k.service, k.route, v[0], v[1])
	}
	for k, v := range paths {
		b.Queue(s.q(`INSERT INTO {s}.noise_counts AS c (service, route, path, raw, noise) VALUES ($1,$2,$3,$4,$5)
			ON CONFLICT (service, route, path) DO UPDATE SET raw = c.raw + EXCLUDED.raw, noise = c.noise + EXCLUDED.noise`),
			k.service, k.route, k.path, v[0], v[1])
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save noise counters: %w", err)
	}
	return nil
}

// RouteID names a route of a service.
type RouteID struct{ Service, Route string }

// LoadNoise returns the persisted noise counters of every route.
func (s *Store) LoadNoise(ctx context.Context) (map[RouteID]NoiseCounts, error) {
	out := map[RouteID]NoiseCounts{}
	rows, err := s.pool.Query(ctx, s.q(`SELECT service, route, requests, baselines FROM {s}.route_counts`))
	if err != nil {
		return nil, fmt.Errorf("load noise counters: %w", err)
	}
	for rows.Next() {
		var id RouteID
		var n NoiseCounts
		if err := rows.Scan(&id.Service, &id.Route, &n.Requests, &n.Baselines); err != nil {
			return nil, fmt.Errorf("load noise counters: %w", err)
		}
		n.Raw, n.Noise = map[string]int64{}, map[string]int64{}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load noise counters: %w", err)
	}
	rows, err = s.pool.Query(ctx, s.q(`SELECT service, route, path, raw, noise FROM {s}.noise_counts`))
	if err != nil {
		return nil, fmt.Errorf("load noise counters: %w", err)
	}
	for rows.Next() {
		var id RouteID
		var p string
		var raw, noise int64
		if err := rows.Scan(&id.Service, &id.Route, &p, &raw, &noise); err != nil {
			return nil, fmt.Errorf("load noise counters: %w", err)
		}
		n, ok := out[id]
		if !ok {
			n = NoiseCounts{Raw: map[string]int64{}, Noise: map[string]int64{}}
		}
		n.Raw[p], n.Noise[p] = raw, noise
		out[id] = n
	}
	return out, rows.Err()
}

// LoadAI returns the AI counts of every AI route from the stored pairs.
func (s *Store) LoadAI(ctx context.Context) (map[RouteID]AICounts, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT service, route,
		count(*) FILTER (WHERE ai_legacy_label IS NOT NULL AND ai_cube_label IS NOT NULL),
		count(*) FILTER (WHERE lower(ai_legacy_label) = lower(ai_cube_label)),
		coalesce(sum(abs(ai_legacy_score - ai_cube_score)), 0),
		count(*) FILTER (WHERE ai_legacy_score IS NOT NULL AND ai_cube_score IS NOT NULL),
		count(*) FILTER (WHERE ai_truth IS NOT NULL),
		count(*) FILTER (WHERE lower(ai_legacy_label) = lower(ai_truth)),
		count(*) FILTER (WHERE lower(ai_cube_label) = lower(ai_truth))
		FROM {s}.pairs WHERE kind = 'ai' GROUP BY service, route`))
	if err != nil {
		return nil, fmt.Errorf("load AI counts: %w", err)
	}
	defer rows.Close()
	out := map[RouteID]AICounts{}
	for rows.Next() {
		var id RouteID
		var a AICounts
		if err := rows.Scan(&id.Service, &id.Route, &a.Pairs, &a.Agree, &a.ConfDiffSum, &a.ConfPairs, &a.Labelled, &a.LegacyCorrect, &a.CubeCorrect); err != nil {
			return nil, fmt.Errorf("load AI counts: %w", err)
		}
		out[id] = a
	}
	return out, rows.Err()
}

// Seed loads the persisted noise and AI counters into c, so a restarted
// comparator keeps what it learned.
func (s *Store) Seed(ctx context.Context, c *Comparator) error {
	noise, err := s.LoadNoise(ctx)
	if err != nil {
		return err
	}
	for id, n := range noise {
		c.SeedNoise(id.Service, id.Route, n)
	}
	ai, err := s.LoadAI(ctx)
	if err != nil {
		return err
	}
	for id, a := range ai {
		c.SeedAI(id.Service, id.Route, a)
	}
	return nil
}

// StoredPair is one stored verdict as `compare show` prints it.
type StoredPair struct {
	RequestID  string          `json:"request_id"`
	Service    string          `json:"service"`
	Route      string          `json:"route"`
	Method     string          `json:"method,omitempty"`
	Path       string          `json:"path,omitempty"`
	Operation  string          `json:"operation,omitempty"`
	Verdict    string          `json:"verdict"`
	Severity   string          `json:"severity"`
	Skipped    string          `json:"skipped,omitempty"`
	Run        string          `json:"run,omitempty"` // live or window; empty: not recorded
	Accepted   bool            `json:"accepted,omitempty"`
	Causes     []string        `json:"causes"`
	Signature  string          `json:"signature,omitempty"`
	Diffs      json.RawMessage `json:"diffs"`
	NoiseDiffs json.RawMessage `json:"noise_diffs"`
	CubeError  string          `json:"cube_error,omitempty"`
	ReplayedAt time.Time       `json:"replayed_at"`
	ComparedAt time.Time       `json:"compared_at"`
}

// Pairs returns the stored verdicts of a request id (one per replay),
// oldest first; none when the id is unknown.
func (s *Store) Pairs(ctx context.Context, requestID string) ([]StoredPair, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT request_id, service, route, coalesce(method, ''), coalesce(path, ''), coalesce(operation, ''),
		verdict, severity, coalesce(skipped, ''), coalesce(run, ''), accepted, causes, coalesce(signature, ''), diffs, noise_diffs, coalesce(cube_error, ''),
		replayed_at, compared_at FROM {s}.pairs WHERE request_id = $1 ORDER BY replayed_at, id`), requestID)
	if err != nil {
		return nil, fmt.Errorf("look up request %s: %w", requestID, err)
	}
	var out []StoredPair
	for rows.Next() {
		var p StoredPair
		var diffs, nd []byte
		if err := rows.Scan(&p.RequestID, &p.Service, &p.Route, &p.Method, &p.Path, &p.Operation, &p.Verdict, &p.Severity, &p.Skipped, &p.Run,
			&p.Accepted, &p.Causes, &p.Signature, &diffs, &nd, &p.CubeError, &p.ReplayedAt, &p.ComparedAt); err != nil {
			return nil, fmt.Errorf("look up request %s: %w", requestID, err)
		}
		p.Diffs, p.NoiseDiffs = diffs, nd
		out = append(out, p)
	}
	return out, rows.Err()
}
