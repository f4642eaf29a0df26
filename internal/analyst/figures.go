package analyst

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heal7/shadowcube/comparator"
)

// Query selects what a report shows. Zero fields select everything:
// Since zero = the oldest roll-up, Until zero = now. Since and Until are
// widened to whole hours (roll-ups are hourly).
type Query struct {
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Service   string    `json:"service,omitempty"`
	Route     string    `json:"route,omitempty"`
	Cause     string    `json:"cause,omitempty"`     // only pairs carrying this cause tag
	Signature string    `json:"signature,omitempty"` // only pairs of this signature
	Verdict   string    `json:"verdict,omitempty"`   // match, mismatch, noise, error, moved-on, skipped
}

// Filtered says whether the query narrows below service level.
func (q Query) Filtered() bool {
	return q.Route != "" || q.Cause != "" || q.Signature != "" || q.Verdict != ""
}

// Options are the knobs of Build.
type Options struct {
	// Accepted, when set, decides which signatures are accepted as
	// expected (the current accepted-signatures file, or serve's table):
	// a signature accepted after its pairs were compared counts as
	// accepted, one un-accepted counts as open. When nil, the acceptance
	// recorded at compare time is used.
	Accepted *comparator.Accepted
	// AI is the rollback rule for AI routes (zero = defaults).
	AI comparator.AIConfig
	// TopPaths and TopSignatures bound the per-route lists (0 = 20).
	TopPaths, TopSignatures int
	// Examples bounds the examples shown per signature (0 = all kept,
	// -1 = none).
	Examples int
	// Criteria, when set, evaluates the gate into Figures.Gate (over the
	// query's window and service, ignoring the narrower filters).
	Criteria *Criteria
	// Inputs are the gate's NATS-side inputs (sync lag, DLQ).
	Inputs GateInputs
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// CI is a 95% confidence interval of a proportion (Wilson score).
type CI struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// Latency holds latency figures of one side in milliseconds. P50/P95 are
// read from the roll-ups' histograms (within about 10%); zero when N is 0.
type Latency struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
}

// Stats are the counts and rates of a route (or a whole service).
type Stats struct {
	Pairs      int64   `json:"pairs"` // compared pairs (skipped requests not included)
	Skipped    int64   `json:"skipped"`
	Matches    int64   `json:"matches"`
	Noise      int64   `json:"noise_only"`
	MovedOn    int64   `json:"moved_on"`
	Mismatches int64   `json:"mismatches"` // including accepted ones
	Accepted   int64   `json:"accepted"`
	Open       int64   `json:"open"` // mismatches neither noise nor accepted
	Errors     int64   `json:"cube_errors"`
	Stale      int64   `json:"stale"`
	MatchRate  float64 `json:"match_rate"` // (matches + noise-only + moved-on) / (pairs − cube errors)
	MatchCI    CI      `json:"match_ci"`
	OpenRate   float64 `json:"open_rate"` // open / (pairs − cube errors)
	OpenCI     CI      `json:"open_ci"`
	ErrorRate  float64 `json:"error_rate"` // cube errors / pairs
	ErrorCI    CI      `json:"error_ci"`
	StaleShare float64 `json:"stale_share"` // stale / pairs
	Legacy     Latency `json:"legacy_latency"`
	Cube       Latency `json:"cube_latency"`

	legacyHist, cubeHist []int64
}

// TrendPoint is one hour of a route.
type TrendPoint struct {
	Hour      time.Time `json:"hour"`
	Pairs     int64     `json:"pairs"`
	Open      int64     `json:"open"`
	MatchRate float64   `json:"match_rate"`
}

// PathShare is a differing field path and the share of the route's
// mismatches reporting it.
type PathShare struct {
	Path  string  `json:"path"`
	Pairs int64   `json:"pairs"`
	Share float64 `json:"share"`
}

// CauseCount is a cause tag and the route's mismatches carrying it (a
// pair may carry several).
type CauseCount struct {
	Cause string  `json:"cause"`
	Count int64   `json:"count"`
	Open  int64   `json:"open"`
	Share float64 `json:"share"` // of the route's mismatches
}

// Signature is one mismatch group with its examples.
type Signature struct {
	Signature string    `json:"signature"`
	Verdict   string    `json:"verdict"`
	Causes    []string  `json:"causes"`
	Count     int64     `json:"count"`
	Open      int64     `json:"open"`
	Accepted  bool      `json:"accepted"`
	Reason    string    `json:"accepted_reason,omitempty"`
	Examples  []Example `json:"examples,omitempty"`
	Expanded  bool      `json:"-"` // shown open (the route's largest open signature)
}

// AI is the accuracy verdict of an AI route under the rollback rule.
type AI struct {
	comparator.AICounts
	Agreement    float64 `json:"agreement"`
	MeanConfDiff float64 `json:"mean_confidence_diff"`
	LegacyAcc    float64 `json:"legacy_accuracy"`
	LegacyCI     CI      `json:"legacy_ci"`
	CubeAcc      float64 `json:"cube_accuracy"`
	CubeCI       CI      `json:"cube_ci"`
	Drop         float64 `json:"drop"`
	Z            float64 `json:"z"`
	P            float64 `json:"p"`
	Flagged      bool    `json:"flagged"`
	Verdict      string  `json:"verdict"` // ok, flagged: <reason>, not enough samples
}

// Route holds every figure of one route.
type Route struct {
	Service    string       `json:"service"`
	Route      string       `json:"route"`
	Kind       string       `json:"kind"`
	Stats      Stats        `json:"stats"`
	Trend      []TrendPoint `json:"trend"`
	Paths      []PathShare  `json:"paths"`
	Causes     []CauseCount `json:"causes"`
	Signatures []Signature  `json:"signatures"`          // open ones (not accepted)
	Accepted   []Signature  `json:"accepted_signatures"` // accepted as expected
	AI         *AI          `json:"ai,omitempty"`
}

// Service holds a service's totals, its routes and its gate verdict.
type Service struct {
	Service string       `json:"service"`
	Total   Stats        `json:"total"`
	Routes  []Route      `json:"routes"`
	Gate    *GateVerdict `json:"gate,omitempty"`
}

// Figures is every figure of a report, read from the roll-ups, the
// examples and the reconcile results only: HTML, CSV, JSON and the web UI
// render this one value.
type Figures struct {
	Query       Query     `json:"query"`
	From        time.Time `json:"from"` // the hours covered: [From, To)
	To          time.Time `json:"to"`
	GeneratedAt time.Time `json:"generated_at"`
	Services    []Service `json:"services"`
	Gate        *Gate     `json:"gate,omitempty"`
}

const z95 = 1.959964

func wilson(k, n int64) CI {
	if n <= 0 {
		return CI{0, 1}
	}
	i := comparator.Wilson(k, n, z95)
	return CI{i.Lo, i.Hi}
}

func ratio(k, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(k) / float64(n)
}

// rollupRow is one row of the roll-up totals read by readRollups: with
// bySignature, the totals of one route × verdict × signature over the
// window (hour zero); else one route × verdict × hour (signature empty).
type rollupRow struct {
	bySignature                              bool
	hour                                     time.Time
	service, route, verdict, signature, kind string
	causes                                   []string
	pairs, accepted, stale                   int64
	ai                                       comparator.AICounts
}

func hourFloor(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

func hourCeil(t time.Time) time.Time {
	f := hourFloor(t)
	if f.Equal(t.UTC()) {
		return f
	}
	return f.Add(time.Hour)
}

// window returns the hours a query covers: [from, to).
func (q Query) window(now time.Time) (from, to time.Time) {
	to = hourFloor(now).Add(time.Hour)
	if !q.Until.IsZero() {
		to = hourCeil(q.Until)
	}
	if !q.Since.IsZero() {
		from = hourFloor(q.Since)
	}
	return from, to
}

// baseRoute strips the operation suffix roll-ups add to a route.
func baseRoute(route string) string {
	if i := strings.Index(route, " op="); i >= 0 {
		return route[:i]
	}
	return route
}

// rollupWhere is the filter of the roll-up tables ($1..$7).
const rollupWhere = `hour >= $1 AND hour < $2 AND ($3 = '' OR service = $3) AND ($4 = '' OR route = $4)
		AND ($5 = '' OR $5 = ANY(causes)) AND ($6 = '' OR signature = $6) AND ($7 = '' OR verdict = $7)`

// readRollups reads the totals the query selects, summed by PostgreSQL in
// one pass over rollup_hourly: per route × verdict × signature (counts,
// causes, AI) and per route × verdict × hour (the trend).
func readRollups(ctx context.Context, st *comparator.Store, q Query, from, to time.Time) ([]rollupRow, error) {
	rows, err := st.Pool().Query(ctx, st.SQL(`SELECT GROUPING(hour) = 1, coalesce(hour, 'epoch'), service, route, kind, verdict,
		coalesce(signature, ''), coalesce(causes, '{}'), sum(pairs)::bigint, sum(accepted)::bigint, sum(stale)::bigint,
		sum(ai_pairs)::bigint, sum(ai_agree)::bigint, sum(ai_conf_diff_sum), sum(ai_conf_pairs)::bigint, sum(ai_labelled)::bigint,
		sum(ai_legacy_correct)::bigint, sum(ai_cube_correct)::bigint
		FROM {s}.rollup_hourly WHERE `+rollupWhere+`
		GROUP BY GROUPING SETS ((service, route, kind, verdict, signature, causes), (service, route, kind, verdict, hour))`),
		from, to, q.Service, q.Route, q.Cause, q.Signature, q.Verdict)
	if err != nil {
		return nil, fmt.Errorf("report: read roll-ups: %w", err)
	}
	defer rows.Close()
	var out []rollupRow
	for rows.Next() {
		var r rollupRow
		a := &r.ai
		if err := rows.Scan(&r.bySignature, &r.hour, &r.service, &r.route, &r.kind, &r.verdict, &r.signature, &r.causes, &r.pairs, &r.accepted, &r.stale,
			&a.Pairs, &a.Agree, &a.ConfDiffSum, &a.ConfPairs, &a.Labelled, &a.LegacyCorrect, &a.CubeCorrect); err != nil {
			return nil, fmt.Errorf("report: read roll-ups: %w", err)
		}
		r.hour = r.hour.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: read roll-ups: %w", err)
	}
	return out, nil
}

// hourOpen is the per-hour mismatch count of one signature, read only
// when acceptance decided now differs from the one recorded.
type hourOpen struct {
	service, route, signature string
	hour                      time.Time
	pairs, accepted           int64
}

func readHourOpen(ctx context.Context, st *comparator.Store, q Query, from, to time.Time, sigs []string) ([]hourOpen, error) {
	rows, err := st.Pool().Query(ctx, st.SQL(`SELECT service, route, signature, hour, sum(pairs)::bigint, sum(accepted)::bigint
		FROM {s}.rollup_hourly WHERE `+rollupWhere+` AND verdict = 'mismatch' AND signature = ANY($8) GROUP BY 1, 2, 3, 4`),
		from, to, q.Service, q.Route, q.Cause, q.Signature, q.Verdict, sigs)
	if err != nil {
		return nil, fmt.Errorf("report: read hourly mismatches: %w", err)
	}
	defer rows.Close()
	var out []hourOpen
	for rows.Next() {
		var h hourOpen
		if err := rows.Scan(&h.service, &h.route, &h.signature, &h.hour, &h.pairs, &h.accepted); err != nil {
			return nil, fmt.Errorf("report: read hourly mismatches: %w", err)
		}
		h.hour = h.hour.UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}

// latencyRow is the latency of one route over the window.
type latencyRow struct {
	service, route       string
	legacySum, cubeSum   float64
	legacyN, cubeN       int64
	legacyHist, cubeHist []int64
}

// readLatency reads the latency roll-ups of the query's window, routes and
// verdict (they are not kept per signature or cause: none under those
// filters).
func readLatency(ctx context.Context, st *comparator.Store, q Query, from, to time.Time) (map[[2]string]*latencyRow, error) {
	out := map[[2]string]*latencyRow{}
	if q.Signature != "" || q.Cause != "" {
		return out, nil
	}
	rows, err := st.Pool().Query(ctx, st.SQL(`SELECT service, route, legacy_ms_sum, legacy_ms_n, cube_ms_sum, cube_ms_n, legacy_hist, cube_hist
		FROM {s}.rollup_latency WHERE hour >= $1 AND hour < $2 AND ($3 = '' OR service = $3) AND ($4 = '' OR route = $4) AND ($5 = '' OR verdict = $5)`),
		from, to, q.Service, q.Route, q.Verdict)
	if err != nil {
		return nil, fmt.Errorf("report: read latency: %w", err)
	}
	defer rows.Close()
	var r latencyRow
	var lh, ch []int64
	for rows.Next() {
		if err := rows.Scan(&r.service, &r.route, &r.legacySum, &r.legacyN, &r.cubeSum, &r.cubeN, &lh, &ch); err != nil {
			return nil, fmt.Errorf("report: read latency: %w", err)
		}
		k := [2]string{r.service, r.route}
		l := out[k]
		if l == nil {
			l = &latencyRow{service: r.service, route: r.route}
			out[k] = l
		}
		l.legacySum += r.legacySum
		l.cubeSum += r.cubeSum
		l.legacyN += r.legacyN
		l.cubeN += r.cubeN
		l.legacyHist = addHist(l.legacyHist, lh)
		l.cubeHist = addHist(l.cubeHist, ch)
	}
	return out, rows.Err()
}

type pathRow struct {
	service, route, signature, path string
	pairs                           int64
}

func readPaths(ctx context.Context, st *comparator.Store, q Query, from, to time.Time) ([]pathRow, error) {
	rows, err := st.Pool().Query(ctx, st.SQL(`SELECT service, route, signature, path, sum(pairs)::bigint FROM {s}.rollup_paths
		WHERE hour >= $1 AND hour < $2 AND verdict = 'mismatch' AND ($3 = '' OR service = $3) AND ($4 = '' OR route = $4)
		AND ($5 = '' OR signature = $5) AND ($6 = '' OR verdict = $6)
		GROUP BY 1, 2, 3, 4`), from, to, q.Service, q.Route, q.Signature, q.Verdict)
	if err != nil {
		return nil, fmt.Errorf("report: read paths: %w", err)
	}
	defer rows.Close()
	var out []pathRow
	for rows.Next() {
		var p pathRow
		if err := rows.Scan(&p.service, &p.route, &p.signature, &p.path, &p.pairs); err != nil {
			return nil, fmt.Errorf("report: read paths: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// acceptance decides per signature whether it is accepted now.
type acceptance struct {
	file *comparator.Accepted
}

// open returns how many pairs of a mismatch roll-up row are open, whether
// the row's signature counts as accepted, and the reason.
func (a acceptance) judge(r *rollupRow) (open int64, accepted bool, reason string) {
	if r.verdict != string(comparator.VerdictMismatch) {
		return 0, false, ""
	}
	if a.file != nil {
		if e, ok := a.file.Match(r.service, baseRoute(r.route), r.signature, r.causes); ok {
			return 0, true, e.Reason
		}
		return r.pairs, false, ""
	}
	return r.pairs - r.accepted, r.accepted > 0 && r.accepted == r.pairs, ""
}

type routeAcc struct {
	r      *Route
	trend  map[time.Time]*TrendPoint
	trendM map[time.Time]int64 // matching pairs (match, noise, moved-on) per hour
	trendE map[time.Time]int64 // errors per hour
	causes map[string]*CauseCount
	sigs   map[string]*Signature
	ai     comparator.AICounts
	hasAI  bool
}

func (s *Stats) add(r *rollupRow, open int64, accepted bool) {
	if r.verdict == string(comparator.VerdictSkipped) {
		s.Skipped += r.pairs
		return
	}
	s.Pairs += r.pairs
	s.Stale += r.stale
	switch comparator.Verdict(r.verdict) {
	case comparator.VerdictMatch:
		s.Matches += r.pairs
	case comparator.VerdictNoise:
		s.Noise += r.pairs
	case comparator.VerdictMovedOn:
		s.MovedOn += r.pairs
	case comparator.VerdictError:
		s.Errors += r.pairs
	case comparator.VerdictMismatch:
		s.Mismatches += r.pairs
		s.Open += open
		if accepted {
			s.Accepted += r.pairs
		} else {
			s.Accepted += r.pairs - open
		}
	}
}

func (s *Stats) addLatency(l *latencyRow) {
	s.Legacy.N += l.legacyN
	s.Legacy.Mean += l.legacySum // a sum until finish
	s.Cube.N += l.cubeN
	s.Cube.Mean += l.cubeSum
	s.legacyHist = addHist(s.legacyHist, l.legacyHist)
	s.cubeHist = addHist(s.cubeHist, l.cubeHist)
}

func addHist(a, b []int64) []int64 {
	if len(a) < len(b) {
		a = append(a, make([]int64, len(b)-len(a))...)
	}
	for i, v := range b {
		a[i] += v
	}
	return a
}

func (s *Stats) finish() {
	n := s.Pairs - s.Errors
	s.MatchRate = ratio(s.Matches+s.Noise+s.MovedOn, n)
	s.MatchCI = wilson(s.Matches+s.Noise+s.MovedOn, n)
	s.OpenRate = ratio(s.Open, n)
	s.OpenCI = wilson(s.Open, n)
	s.ErrorRate = ratio(s.Errors, s.Pairs)
	s.ErrorCI = wilson(s.Errors, s.Pairs)
	s.StaleShare = ratio(s.Stale, s.Pairs)
	for _, l := range []struct {
		lat  *Latency
		hist []int64
	}{{&s.Legacy, s.legacyHist}, {&s.Cube, s.cubeHist}} {
		if l.lat.N == 0 {
			*l.lat = Latency{}
			continue
		}
		l.lat.Mean /= float64(l.lat.N)
		l.lat.P50 = comparator.Percentile(l.hist, 0.50)
		l.lat.P95 = comparator.Percentile(l.hist, 0.95)
		if math.IsNaN(l.lat.P50) {
			l.lat.P50, l.lat.P95 = 0, 0
		}
	}
}

// Build reads every figure of a report for q from the store's roll-ups,
// examples and reconcile results (never from the pairs table).
func Build(ctx context.Context, st *comparator.Store, q Query, opts Options) (*Figures, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.TopPaths <= 0 {
		opts.TopPaths = 20
	}
	if opts.TopSignatures <= 0 {
		opts.TopSignatures = 20
	}
	t := now().UTC()
	from, to := q.window(t)
	f := &Figures{Query: q, From: from, To: to, GeneratedAt: t}
	// The three reads are independent: run them side by side (the store's
	// pool has connections for them).
	var rows []rollupRow
	var lat map[[2]string]*latencyRow
	var paths []pathRow
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Add(3)
	go func() { defer wg.Done(); rows, errs[0] = readRollups(ctx, st, q, from, to) }()
	go func() { defer wg.Done(); lat, errs[1] = readLatency(ctx, st, q, from, to) }()
	go func() { defer wg.Done(); paths, errs[2] = readPaths(ctx, st, q, from, to) }()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	acc := acceptance{file: opts.Accepted}
	services := map[string]*Service{}
	routes := map[[2]string]*routeAcc{}
	var order [][2]string
	var changed []string // signatures whose acceptance now differs from the recorded one
	for i := range rows {
		r := &rows[i]
		svc := services[r.service]
		if svc == nil {
			svc = &Service{Service: r.service}
			services[r.service] = svc
		}
		key := [2]string{r.service, r.route}
		ra := routes[key]
		if ra == nil {
			ra = &routeAcc{r: &Route{Service: r.service, Route: r.route, Kind: r.kind}, trend: map[time.Time]*TrendPoint{},
				trendM: map[time.Time]int64{}, trendE: map[time.Time]int64{}, causes: map[string]*CauseCount{}, sigs: map[string]*Signature{}}
			routes[key] = ra
			order = append(order, key)
		}
		if !r.bySignature {
			// The trend: per hour, with open as recorded at compare time
			// (corrected below for signatures judged otherwise now).
			if f.From.IsZero() || r.hour.Before(f.From) {
				f.From = r.hour
			}
			if r.verdict == string(comparator.VerdictSkipped) {
				continue
			}
			tp := ra.trend[r.hour]
			if tp == nil {
				tp = &TrendPoint{Hour: r.hour}
				ra.trend[r.hour] = tp
			}
			tp.Pairs += r.pairs
			switch comparator.Verdict(r.verdict) {
			case comparator.VerdictMatch, comparator.VerdictNoise, comparator.VerdictMovedOn:
				ra.trendM[r.hour] += r.pairs
			case comparator.VerdictError:
				ra.trendE[r.hour] += r.pairs
			case comparator.VerdictMismatch:
				tp.Open += r.pairs - r.accepted
			}
			continue
		}
		open, accepted, reason := acc.judge(r)
		if r.verdict == string(comparator.VerdictMismatch) && open != r.pairs-r.accepted {
			changed = append(changed, r.signature)
		}
		ra.r.Stats.add(r, open, accepted)
		svc.Total.add(r, open, accepted)
		if r.verdict == string(comparator.VerdictMismatch) {
			for _, c := range r.causes {
				cc := ra.causes[c]
				if cc == nil {
					cc = &CauseCount{Cause: c}
					ra.causes[c] = cc
				}
				cc.Count += r.pairs
				cc.Open += open
			}
		}
		if r.signature != "" && r.verdict != string(comparator.VerdictSkipped) && r.verdict != string(comparator.VerdictMatch) &&
			r.verdict != string(comparator.VerdictNoise) {
			sg := ra.sigs[r.signature]
			if sg == nil {
				sg = &Signature{Signature: r.signature, Verdict: r.verdict, Causes: r.causes, Accepted: true}
				ra.sigs[r.signature] = sg
			}
			sg.Count += r.pairs
			sg.Open += open
			if r.verdict != string(comparator.VerdictMismatch) || !accepted {
				sg.Accepted = false
			}
			if reason != "" {
				sg.Reason = reason
			}
		}
		if r.ai.Pairs > 0 || r.ai.Labelled > 0 || r.kind == comparator.KindAI {
			ra.hasAI = true
			a := &ra.ai
			a.Pairs += r.ai.Pairs
			a.Agree += r.ai.Agree
			a.ConfDiffSum += r.ai.ConfDiffSum
			a.ConfPairs += r.ai.ConfPairs
			a.Labelled += r.ai.Labelled
			a.LegacyCorrect += r.ai.LegacyCorrect
			a.CubeCorrect += r.ai.CubeCorrect
		}
	}
	if len(changed) > 0 {
		hours, err := readHourOpen(ctx, st, q, from, to, changed)
		if err != nil {
			return nil, err
		}
		for _, h := range hours {
			ra := routes[[2]string{h.service, h.route}]
			if ra == nil || ra.sigs[h.signature] == nil || ra.trend[h.hour] == nil {
				continue
			}
			now := h.pairs
			if ra.sigs[h.signature].Accepted {
				now = 0
			}
			ra.trend[h.hour].Open += now - (h.pairs - h.accepted)
		}
	}
	for key, l := range lat {
		if ra := routes[key]; ra != nil {
			ra.r.Stats.addLatency(l)
			services[key[0]].Total.addLatency(l)
		}
	}
	pathCounts := map[[2]string]map[string]int64{}
	for _, p := range paths {
		key := [2]string{p.service, p.route}
		ra := routes[key]
		if ra == nil {
			continue
		}
		if q.Cause != "" {
			if _, ok := ra.sigs[p.signature]; !ok {
				continue // a signature without the cause
			}
		}
		if pathCounts[key] == nil {
			pathCounts[key] = map[string]int64{}
		}
		pathCounts[key][p.path] += p.pairs
	}
	var sigNames []string
	for _, key := range order {
		ra := routes[key]
		r := ra.r
		r.Stats.finish()
		hours := make([]time.Time, 0, len(ra.trend))
		for h := range ra.trend {
			hours = append(hours, h)
		}
		sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
		for _, h := range hours {
			tp := ra.trend[h]
			tp.MatchRate = ratio(ra.trendM[h], tp.Pairs-ra.trendE[h])
			r.Trend = append(r.Trend, *tp)
		}
		for p, n := range pathCounts[key] {
			r.Paths = append(r.Paths, PathShare{Path: p, Pairs: n, Share: ratio(n, r.Stats.Mismatches)})
		}
		sort.Slice(r.Paths, func(i, j int) bool {
			if r.Paths[i].Pairs != r.Paths[j].Pairs {
				return r.Paths[i].Pairs > r.Paths[j].Pairs
			}
			return r.Paths[i].Path < r.Paths[j].Path
		})
		if len(r.Paths) > opts.TopPaths {
			r.Paths = r.Paths[:opts.TopPaths]
		}
		for _, c := range ra.causes {
			c.Share = ratio(c.Count, r.Stats.Mismatches)
			r.Causes = append(r.Causes, *c)
		}
		sort.Slice(r.Causes, func(i, j int) bool {
			if r.Causes[i].Count != r.Causes[j].Count {
				return r.Causes[i].Count > r.Causes[j].Count
			}
			return r.Causes[i].Cause < r.Causes[j].Cause
		})
		for _, sg := range ra.sigs {
			if sg.Accepted {
				r.Accepted = append(r.Accepted, *sg)
			} else {
				r.Signatures = append(r.Signatures, *sg)
			}
		}
		for _, list := range []*[]Signature{&r.Signatures, &r.Accepted} {
			l := *list
			sort.Slice(l, func(i, j int) bool {
				if l[i].Count != l[j].Count {
					return l[i].Count > l[j].Count
				}
				return l[i].Signature < l[j].Signature
			})
			if len(l) > opts.TopSignatures {
				l = l[:opts.TopSignatures]
			}
			*list = l
			for _, sg := range l {
				sigNames = append(sigNames, sg.Signature)
			}
		}
		if len(r.Signatures) > 0 {
			r.Signatures[0].Expanded = true
		}
		if ra.hasAI {
			r.AI = evaluateAI(ra.ai, opts.AI)
		}
	}
	for _, key := range order {
		r := routes[key].r
		r.Trend, r.Paths, r.Causes = nonNil(r.Trend), nonNil(r.Paths), nonNil(r.Causes)
		r.Signatures, r.Accepted = nonNil(r.Signatures), nonNil(r.Accepted)
	}
	examples, err := readExamples(ctx, st, sigNames, opts.Examples)
	if err != nil {
		return nil, err
	}
	for _, key := range order {
		r := routes[key].r
		for _, list := range [][]Signature{r.Signatures, r.Accepted} {
			for i := range list {
				list[i].Examples = examples[list[i].Signature]
			}
		}
		svc := services[key[0]]
		svc.Routes = append(svc.Routes, *r)
	}
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		svc := services[n]
		svc.Total.finish()
		sort.Slice(svc.Routes, func(i, j int) bool { return svc.Routes[i].Route < svc.Routes[j].Route })
		f.Services = append(f.Services, *svc)
	}
	f.Services = nonNil(f.Services)
	if opts.Criteria != nil {
		g, err := evaluateGate(ctx, st, q, opts, f, t)
		if err != nil {
			return nil, err
		}
		f.Gate = g
		for i := range f.Services {
			for j := range g.Services {
				if g.Services[j].Service == f.Services[i].Service {
					f.Services[i].Gate = &g.Services[j]
				}
			}
		}
	}
	return f, nil
}

func evaluateAI(c comparator.AICounts, cfg comparator.AIConfig) *AI {
	r := c.Evaluate(cfg)
	a := &AI{AICounts: c, Agreement: r.Agreement, MeanConfDiff: r.MeanConfDiff, LegacyAcc: r.LegacyAcc, CubeAcc: r.CubeAcc,
		LegacyCI: CI{r.LegacyCI.Lo, r.LegacyCI.Hi}, CubeCI: CI{r.CubeCI.Lo, r.CubeCI.Hi}, Drop: r.Drop, Z: finite(r.Z), P: r.P, Flagged: r.Flagged}
	min := cfg.MinSamples
	if min == 0 {
		min = 30
	}
	switch {
	case r.Flagged:
		a.Verdict = "flagged: " + r.FlaggedReason
	case c.Labelled < min:
		a.Verdict = fmt.Sprintf("not enough samples (%d labelled, need %d)", c.Labelled, min)
	default:
		a.Verdict = "ok"
	}
	return a
}

// finite maps ±Inf (a z of a zero standard error) to ±1e9, which JSON can hold.
func finite(x float64) float64 {
	switch {
	case math.IsInf(x, 1):
		return 1e9
	case math.IsInf(x, -1):
		return -1e9
	case math.IsNaN(x):
		return 0
	}
	return x
}

// nonNil makes empty lists [] rather than null in the JSON export.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
