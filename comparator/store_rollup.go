package comparator

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heal7/shadowcube/schemas"
)

// Defaults of StoreConfig.
const (
	DefaultExamples  = 5
	DefaultRetention = 14 * 24 * time.Hour
	// ExampleBodyCap is the most of each body (request, legacy, cube) an
	// example keeps; a longer body is cut and marked truncated.
	ExampleBodyCap = 256 << 10
	// PruneBatch is how many pairs one retention DELETE removes at most, so
	// a prune never holds long locks nor a huge transaction.
	PruneBatch = 5000
)

// migrationRollups is migration 3: the tables reports read so that no
// figure needs a scan of all pairs.
//
//   - rollup_hourly: one row per hour × service × route × verdict ×
//     signature (” when the pair has none); the signature determines the
//     pair's cause set (causes), so this is finer than service × route ×
//     verdict × cause and per-cause figures are sums over it without double
//     counting. Counts, pairs accepted at compare time, stale pairs, AI
//     counts.
//   - rollup_latency: per hour × service × route × verdict, latency sums
//     and histograms (LatencyBounds) of both sides (not per signature: the
//     histograms are the widest rows, and a report reads them per route).
//   - rollup_paths: per hour × service × route × verdict × signature, how
//     many pairs reported a difference at each (generalised) field path.
//   - examples: up to StoreConfig.Examples pairs per signature with the
//     full request and both answers (bodies capped at ExampleBodyCap).
//   - reconcile_runs: each reconcile's result per target (for the gate).
//
// route is the route template, or "route op=<operation>" when the route
// defines an operation key (as signatures group them).
const migrationRollups = `CREATE TABLE {s}.rollup_hourly (
		hour              timestamptz NOT NULL,
		service           text NOT NULL,
		route             text NOT NULL,
		verdict           text NOT NULL,
		signature         text NOT NULL DEFAULT '',
		kind              text NOT NULL,
		causes            text[] NOT NULL DEFAULT '{}',
		pairs             bigint NOT NULL DEFAULT 0,
		accepted          bigint NOT NULL DEFAULT 0,
		stale             bigint NOT NULL DEFAULT 0,
		ai_pairs          bigint NOT NULL DEFAULT 0,
		ai_agree          bigint NOT NULL DEFAULT 0,
		ai_conf_diff_sum  double precision NOT NULL DEFAULT 0,
		ai_conf_pairs     bigint NOT NULL DEFAULT 0,
		ai_labelled       bigint NOT NULL DEFAULT 0,
		ai_legacy_correct bigint NOT NULL DEFAULT 0,
		ai_cube_correct   bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (hour, service, route, verdict, signature)
	);
	CREATE INDEX rollup_hourly_service ON {s}.rollup_hourly (service, route, hour);
	CREATE INDEX rollup_hourly_signature ON {s}.rollup_hourly (signature) WHERE signature <> '';
	CREATE TABLE {s}.rollup_latency (
		hour          timestamptz NOT NULL,
		service       text NOT NULL,
		route         text NOT NULL,
		verdict       text NOT NULL,
		legacy_ms_sum double precision NOT NULL DEFAULT 0,
		legacy_ms_n   bigint NOT NULL DEFAULT 0,
		cube_ms_sum   double precision NOT NULL DEFAULT 0,
		cube_ms_n     bigint NOT NULL DEFAULT 0,
		legacy_hist   bigint[] NOT NULL DEFAULT '{}',
		cube_hist     bigint[] NOT NULL DEFAULT '{}',
		PRIMARY KEY (hour, service, route, verdict)
	);
	CREATE TABLE {s}.rollup_paths (
		hour      timestamptz NOT NULL,
		service   text NOT NULL,
		route     text NOT NULL,
		verdict   text NOT NULL,
		signature text NOT NULL DEFAULT '',
		path      text NOT NULL,
		pairs     bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (hour, service, route, verdict, signature, path)
	);
	CREATE INDEX rollup_paths_service ON {s}.rollup_paths (service, route, hour);
	CREATE TABLE {s}.examples (
		signature         text NOT NULL,
		slot              int NOT NULL,
		request_id        text NOT NULL,
		replayed_at       timestamptz NOT NULL,
		compared_at       timestamptz NOT NULL,
		service           text NOT NULL,
		route             text NOT NULL,
		verdict           text NOT NULL,
		causes            text[] NOT NULL DEFAULT '{}',
		diffs             jsonb NOT NULL DEFAULT '[]',
		method            text,
		request_path      text,
		request_body      bytea,
		request_truncated boolean NOT NULL DEFAULT false,
		legacy_status     int,
		legacy_headers    jsonb NOT NULL DEFAULT '{}',
		legacy_body       bytea,
		legacy_truncated  boolean NOT NULL DEFAULT false,
		cube_status       int,
		cube_headers      jsonb NOT NULL DEFAULT '{}',
		cube_body         bytea,
		cube_truncated    boolean NOT NULL DEFAULT false,
		cube_error        text,
		PRIMARY KEY (signature, slot),
		UNIQUE (request_id, replayed_at)
	);
	CREATE TABLE {s}.reconcile_runs (
		id          bigserial PRIMARY KEY,
		target      text NOT NULL,
		started_at  timestamptz NOT NULL,
		finished_at timestamptz NOT NULL,
		clean       boolean NOT NULL,
		differences bigint NOT NULL DEFAULT 0,
		tables      int NOT NULL DEFAULT 0,
		detail      text NOT NULL DEFAULT ''
	);
	CREATE INDEX reconcile_runs_target ON {s}.reconcile_runs (target, finished_at DESC);`

// LatencyBounds are the upper bounds (milliseconds) of the latency
// histogram buckets of the roll-ups: 0.5 ms × 1.2^i, the last bucket open.
// Percentiles read from them (Percentile) are within about 10% of the
// exact value.
var LatencyBounds = func() []float64 {
	b := make([]float64, 72)
	for i := range b {
		b[i] = 0.5 * math.Pow(1.2, float64(i))
	}
	b[len(b)-1] = math.Inf(1)
	return b
}()

// LatencyBucket returns the histogram bucket of a latency in milliseconds.
func LatencyBucket(msec float64) int {
	if !(msec > LatencyBounds[0]) { // also NaN and negatives
		return 0
	}
	i := int(math.Ceil(math.Log(msec/0.5) / math.Log(1.2)))
	i = min(max(i, 0), len(LatencyBounds)-1)
	// Float rounding at a bound: settle on the first bucket that holds msec.
	for i > 0 && msec <= LatencyBounds[i-1] {
		i--
	}
	for i < len(LatencyBounds)-1 && msec > LatencyBounds[i] {
		i++
	}
	return i
}

// Percentile returns the q-quantile (0..1) of a LatencyBounds histogram,
// interpolated linearly inside its bucket; NaN when the histogram is empty.
func Percentile(hist []int64, q float64) float64 {
	var n int64
	for _, c := range hist {
		n += c
	}
	if n == 0 {
		return math.NaN()
	}
	rank := q * float64(n)
	var cum int64
	for i, c := range hist {
		if c == 0 {
			continue
		}
		if float64(cum+c) >= rank {
			lo := 0.0
			if i > 0 {
				lo = LatencyBounds[i-1]
			}
			hi := LatencyBounds[min(i, len(LatencyBounds)-1)]
			if math.IsInf(hi, 1) {
				return lo
			}
			frac := (rank - float64(cum)) / float64(c)
			return lo + frac*(hi-lo)
		}
		cum += c
	}
	return LatencyBounds[len(LatencyBounds)-2]
}

// RollupKey identifies one rollup_hourly row.
type RollupKey struct {
	Hour                               time.Time
	Service, Route, Verdict, Signature string
}

// Rollup is the value of one rollup_hourly row.
type Rollup struct {
	Kind                   string
	Causes                 []string
	Pairs, Accepted, Stale int64
	AI                     AICounts
}

// LatencyKey identifies one rollup_latency row.
type LatencyKey struct {
	Hour                    time.Time
	Service, Route, Verdict string
}

// LatencyRollup is the value of one rollup_latency row.
type LatencyRollup struct {
	LegacyMSSum          float64
	LegacyMSN            int64
	CubeMSSum            float64
	CubeMSN              int64
	LegacyHist, CubeHist []int64
}

type pathKey struct {
	RollupKey
	path string
}

// Rollups accumulates outcomes into roll-up rows in memory; Flush adds
// them to the store. Store.Save uses it for every batch; it is exported so
// that tools and benchmarks build roll-ups by the very same code.
type Rollups struct {
	rows  map[RollupKey]*Rollup
	lat   map[LatencyKey]*LatencyRollup
	paths map[pathKey]int64
}

// NewRollups returns an empty accumulator.
func NewRollups() *Rollups {
	return &Rollups{rows: map[RollupKey]*Rollup{}, lat: map[LatencyKey]*LatencyRollup{}, paths: map[pathKey]int64{}}
}

// Len is the number of distinct roll-up rows held.
func (r *Rollups) Len() int { return len(r.rows) }

// Add counts one outcome.
func (r *Rollups) Add(o *Outcome) {
	k := RollupKey{Hour: o.ComparedAt.UTC().Truncate(time.Hour), Service: o.Service, Route: opRoute(o.Route, o.Operation),
		Verdict: string(o.Verdict), Signature: o.Signature}
	v := r.rows[k]
	if v == nil {
		v = &Rollup{Kind: o.Kind, Causes: nonNil(o.Causes)}
		r.rows[k] = v
	}
	v.Pairs++
	if o.Accepted {
		v.Accepted++
	}
	if o.Stale {
		v.Stale++
	}
	if o.Verdict != VerdictSkipped {
		lk := LatencyKey{Hour: k.Hour, Service: k.Service, Route: k.Route, Verdict: k.Verdict}
		lv := r.lat[lk]
		if lv == nil {
			lv = &LatencyRollup{LegacyHist: make([]int64, len(LatencyBounds)), CubeHist: make([]int64, len(LatencyBounds))}
			r.lat[lk] = lv
		}
		l := ms(o.LegacyLatency)
		lv.LegacyMSSum += l
		lv.LegacyMSN++
		lv.LegacyHist[LatencyBucket(l)]++
		if o.Verdict != VerdictError {
			c := ms(o.CubeLatency)
			lv.CubeMSSum += c
			lv.CubeMSN++
			lv.CubeHist[LatencyBucket(c)]++
		}
	}
	if o.AI != nil {
		v.AI.add(o.AI)
	}
	if len(o.Diffs) > 0 && o.Verdict != VerdictNoise {
		for _, p := range diffPaths(o.Diffs) {
			r.paths[pathKey{k, p}]++
		}
	}
}

const upsertRollup = `INSERT INTO {s}.rollup_hourly AS r (hour, service, route, verdict, signature, kind, causes, pairs, accepted, stale,
		ai_pairs, ai_agree, ai_conf_diff_sum, ai_conf_pairs, ai_labelled, ai_legacy_correct, ai_cube_correct)
	VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)
	ON CONFLICT (hour, service, route, verdict, signature) DO UPDATE SET
		pairs = r.pairs + EXCLUDED.pairs, accepted = r.accepted + EXCLUDED.accepted, stale = r.stale + EXCLUDED.stale,
		ai_pairs = r.ai_pairs + EXCLUDED.ai_pairs, ai_agree = r.ai_agree + EXCLUDED.ai_agree,
		ai_conf_diff_sum = r.ai_conf_diff_sum + EXCLUDED.ai_conf_diff_sum, ai_conf_pairs = r.ai_conf_pairs + EXCLUDED.ai_conf_pairs,
		ai_labelled = r.ai_labelled + EXCLUDED.ai_labelled, ai_legacy_correct = r.ai_legacy_correct + EXCLUDED.ai_legacy_correct,
		ai_cube_correct = r.ai_cube_correct + EXCLUDED.ai_cube_correct`

const upsertLatency = `INSERT INTO {s}.rollup_latency AS r (hour, service, route, verdict,
		legacy_ms_sum, legacy_ms_n, cube_ms_sum, cube_ms_n, legacy_hist, cube_hist)
	VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)
	ON CONFLICT (hour, service, route, verdict) DO UPDATE SET
		legacy_ms_sum = r.legacy_ms_sum + EXCLUDED.legacy_ms_sum, legacy_ms_n = r.legacy_ms_n + EXCLUDED.legacy_ms_n,
		cube_ms_sum = r.cube_ms_sum + EXCLUDED.cube_ms_sum, cube_ms_n = r.cube_ms_n + EXCLUDED.cube_ms_n,
		legacy_hist = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) FROM unnest(r.legacy_hist, EXCLUDED.legacy_hist) WITH ORDINALITY AS t(a, b, i) ORDER BY i),
		cube_hist = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) FROM unnest(r.cube_hist, EXCLUDED.cube_hist) WITH ORDINALITY AS t(a, b, i) ORDER BY i)`

const upsertPath = `INSERT INTO {s}.rollup_paths AS p (hour, service, route, verdict, signature, path, pairs) VALUES ($1,$2,$3,$4,$5,$6,$7)
	ON CONFLICT (hour, service, route, verdict, signature, path) DO UPDATE SET pairs = p.pairs + EXCLUDED.pairs`

// queue adds the accumulated rows to b, in key order: concurrent writers
// lock shared roll-up rows in one order and cannot deadlock.
func (r *Rollups) queue(s *Store, b *pgx.Batch) {
	keys := make([]RollupKey, 0, len(r.rows))
	for k := range r.rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		v := r.rows[k]
		b.Queue(s.q(upsertRollup), k.Hour, k.Service, k.Route, k.Verdict, k.Signature, v.Kind, v.Causes, v.Pairs, v.Accepted, v.Stale,
			v.AI.Pairs, v.AI.Agree, v.AI.ConfDiffSum, v.AI.ConfPairs, v.AI.Labelled, v.AI.LegacyCorrect, v.AI.CubeCorrect)
	}
	lkeys := make([]LatencyKey, 0, len(r.lat))
	for k := range r.lat {
		lkeys = append(lkeys, k)
	}
	slices.SortFunc(lkeys, func(a, b LatencyKey) int {
		return compareKeys(RollupKey{a.Hour, a.Service, a.Route, a.Verdict, ""}, RollupKey{b.Hour, b.Service, b.Route, b.Verdict, ""})
	})
	for _, k := range lkeys {
		v := r.lat[k]
		b.Queue(s.q(upsertLatency), k.Hour, k.Service, k.Route, k.Verdict, v.LegacyMSSum, v.LegacyMSN, v.CubeMSSum, v.CubeMSN, v.LegacyHist, v.CubeHist)
	}
	paths := make([]pathKey, 0, len(r.paths))
	for k := range r.paths {
		paths = append(paths, k)
	}
	slices.SortFunc(paths, func(a, b pathKey) int {
		if c := compareKeys(a.RollupKey, b.RollupKey); c != 0 {
			return c
		}
		return cmp.Compare(a.path, b.path)
	})
	for _, k := range paths {
		b.Queue(s.q(upsertPath), k.Hour, k.Service, k.Route, k.Verdict, k.Signature, k.path, r.paths[k])
	}
}

func compareKeys(a, b RollupKey) int {
	if c := a.Hour.Compare(b.Hour); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Verdict, b.Verdict),
		cmp.Compare(a.Signature, b.Signature))
}

// Flush adds the accumulated rows to the store's roll-ups (one round trip)
// and empties r.
func (r *Rollups) Flush(ctx context.Context, s *Store) error {
	if len(r.rows) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	r.queue(s, b)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save roll-ups: %w", err)
	}
	clear(r.rows)
	clear(r.lat)
	clear(r.paths)
	return nil
}

func (s *Store) addRollups(ctx context.Context, tx pgx.Tx, outs []*Outcome) error {
	r := NewRollups()
	for _, o := range outs {
		r.Add(o)
	}
	if r.Len() == 0 {
		return nil
	}
	b := &pgx.Batch{}
	r.queue(s, b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save roll-ups: %w", err)
	}
	return nil
}

// ExampleHeaders are the answer headers an example keeps.
var ExampleHeaders = []string{"Content-Type", "Content-Encoding", "Content-Language", "Content-Length", "Cache-Control",
	"Etag", "Last-Modified", "Location", "Retry-After", "Vary"}

func selectHeaders(h http.Header) string {
	out := map[string][]string{}
	for _, k := range ExampleHeaders {
		if v := h.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func capBody(b []byte, truncated bool) ([]byte, bool) {
	if len(b) > ExampleBodyCap {
		return b[:ExampleBodyCap], true
	}
	return b, truncated
}

// addExamples keeps new pairs with a signature as examples while their
// signature has fewer than Examples. Slots 1..Examples are the primary key
// with the signature, so concurrent writers never keep more.
func (s *Store) addExamples(ctx context.Context, tx pgx.Tx, outs []*Outcome, answers []*schemas.ShadowResult) error {
	if s.cfg.Examples < 0 || len(answers) == 0 {
		return nil
	}
	want := map[string][]int{} // signature → indices of candidates
	for i, o := range outs {
		if i >= len(answers) || answers[i] == nil || o.Signature == "" {
			continue
		}
		if _, full := s.full.Load(o.Signature); full {
			continue
		}
		if len(want[o.Signature]) < s.cfg.Examples {
			want[o.Signature] = append(want[o.Signature], i)
		}
	}
	if len(want) == 0 {
		return nil
	}
	sigs := make([]string, 0, len(want))
	for sig := range want {
		sigs = append(sigs, sig)
	}
	slices.Sort(sigs) // one lock order across writers
	have := map[string]int{}
	rows, err := tx.Query(ctx, s.q(`SELECT signature, coalesce(max(slot), 0) FROM {s}.examples WHERE signature = ANY($1) GROUP BY 1`), sigs)
	if err != nil {
		return fmt.Errorf("save examples: %w", err)
	}
	var sig string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&sig, &n}, func() error { have[sig] = n; return nil }); err != nil {
		return fmt.Errorf("save examples: %w", err)
	}
	rules := s.cfg.Redact
	b := &pgx.Batch{}
	for _, sig := range sigs {
		slot := have[sig]
		for _, i := range want[sig] {
			if slot >= s.cfg.Examples {
				break
			}
			slot++
			o, res := outs[i], answers[i]
			reqBody, _ := rules.Body(res.Request.Body, res.Request.BodyTruncated, res.Request.Headers.Get("Content-Type"))
			reqBody, reqTrunc := capBody(reqBody, res.Request.BodyTruncated)
			lb, lt := capBody(res.Legacy.Body, res.Legacy.BodyTruncated)
			var cs *int32
			var cb []byte
			var ct bool
			ch := "{}"
			if res.Cube != nil {
				v := int32(res.Cube.Status)
				cs = &v
				cb, ct = capBody(res.Cube.Body, res.Cube.BodyTruncated)
				ch = selectHeaders(res.Cube.Headers)
			}
			diffs, err := json.Marshal(nonNil(o.Diffs))
			if err != nil {
				return fmt.Errorf("save example %s: %w", o.RequestID, err)
			}
			b.Queue(s.q(`INSERT INTO {s}.examples (signature, slot, request_id, replayed_at, compared_at, service, route, verdict, causes, diffs,
				method, request_path, request_body, request_truncated, legacy_status, legacy_headers, legacy_body, legacy_truncated,
				cube_status, cube_headers, cube_body, cube_truncated, cube_error)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23) ON CONFLICT DO NOTHING`),
				sig, slot, o.RequestID, o.ReplayedAt, o.ComparedAt, o.Service, opRoute(o.Route, o.Operation), string(o.Verdict), nonNil(o.Causes), string(diffs),
				strPtr(res.Request.Method), strPtr(res.Request.Path), reqBody, reqTrunc, int32(res.Legacy.Status), selectHeaders(res.Legacy.Headers), lb, lt,
				cs, ch, cb, ct, strPtr(o.CubeError))
		}
		if slot >= s.cfg.Examples {
			s.full.Store(sig, true)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save examples: %w", err)
	}
	return nil
}

// Prune deletes pairs compared before the retention period (now −
// StoreConfig.Retention), PruneBatch at a time, each batch its own
// statement, until none is left or ctx ends. Roll-ups and examples stay.
// It returns how many pairs it deleted.
func (s *Store) Prune(ctx context.Context, now time.Time) (int64, error) {
	return s.PruneBefore(ctx, now.Add(-s.cfg.Retention), PruneBatch)
}

// PruneBefore deletes pairs compared before cutoff, at most batch per
// statement.
func (s *Store) PruneBefore(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = PruneBatch
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.q(`DELETE FROM {s}.pairs WHERE id IN
			(SELECT id FROM {s}.pairs WHERE compared_at < $1 ORDER BY compared_at LIMIT $2)`), cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("prune pairs before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// Retention is the configured retention period of pairs.
func (s *Store) Retention() time.Duration { return s.cfg.Retention }

// Pool is the store's connection pool, for readers of the roll-up tables
// (internal/analyst). Write through Save only.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// SQL replaces {s} in a statement by the store's quoted schema.
func (s *Store) SQL(stmt string) string { return s.q(stmt) }

// rollupsMigration is the version of migrationRollups.
const rollupsMigration = 3

// backfillRollups builds the roll-ups of the pairs already stored when
// migration 3 is applied, through the same Rollups.Add as Save (examples
// cannot be rebuilt: the pairs do not hold the answers). It reads every
// pair once, in the migration's transaction.
func (s *Store) backfillRollups(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, s.q(`SELECT service, route, coalesce(operation, ''), kind, verdict, coalesce(signature, ''), accepted, stale, causes,
		CASE WHEN verdict IN ('mismatch', 'moved-on', 'error') THEN diffs ELSE '[]' END,
		coalesce(legacy_latency_ms, 0), coalesce(cube_latency_ms, 0), compared_at,
		coalesce(ai_truth, ''), coalesce(ai_legacy_label, ''), coalesce(ai_cube_label, ''), ai_legacy_score, ai_cube_score
		FROM {s}.pairs`))
	if err != nil {
		return fmt.Errorf("backfill roll-ups: %w", err)
	}
	defer rows.Close()
	r := NewRollups()
	for rows.Next() {
		var o Outcome
		var verdict string
		var diffs []byte
		var lms, cms float64
		var ai AIPair
		if err := rows.Scan(&o.Service, &o.Route, &o.Operation, &o.Kind, &verdict, &o.Signature, &o.Accepted, &o.Stale, &o.Causes, &diffs,
			&lms, &cms, &o.ComparedAt, &ai.Truth, &ai.LegacyLabel, &ai.CubeLabel, &ai.LegacyScore, &ai.CubeScore); err != nil {
			return fmt.Errorf("backfill roll-ups: %w", err)
		}
		o.Verdict = Verdict(verdict)
		if err := json.Unmarshal(diffs, &o.Diffs); err != nil {
			return fmt.Errorf("backfill roll-ups: diffs: %w", err)
		}
		o.LegacyLatency = time.Duration(lms * float64(time.Millisecond))
		o.CubeLatency = time.Duration(cms * float64(time.Millisecond))
		if o.Kind == KindAI && o.Verdict != VerdictError && o.Verdict != VerdictSkipped {
			o.AI = &ai
		}
		r.Add(&o)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backfill roll-ups: %w", err)
	}
	if r.Len() == 0 {
		return nil
	}
	b := &pgx.Batch{}
	r.queue(s, b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("backfill roll-ups: %w", err)
	}
	return nil
}
