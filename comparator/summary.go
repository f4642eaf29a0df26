package comparator

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// RouteSummary counts the verdicts of one route.
type RouteSummary struct {
	Service, Route, Kind string
	Operation            string // operation key, when the route defines one
	Pairs                int64  // compared pairs (skipped requests not included)
	Matches              int64
	Mismatches           int64 // including accepted ones
	Accepted             int64
	Noise                int64 // pairs whose only differences were noise
	Errors               int64 // cube errors and timeouts
	MovedOn              int64 // differed, but legacy asked again gave the cube's answer
	Stale                int64
	LegacyLatencyMS      float64 // mean
	CubeLatencyMS        float64 // mean
}

// MatchRate is matches (noise-only pairs included) over compared pairs
// (cube errors excluded).
func (r RouteSummary) MatchRate() float64 {
	n := r.Pairs - r.Errors
	if n <= 0 {
		return 0
	}
	return float64(r.Matches+r.Noise+r.MovedOn) / float64(n)
}

// SkipCount is the number of requests of a route shadow did not replay
// for one policy reason (counted, never compared).
type SkipCount struct {
	Service, Route, Reason string
	Count                  int64
}

// CauseCount is the number of mismatches of a route carrying a cause.
type CauseCount struct {
	Service, Route, Cause string
	Count                 int64
	Share                 float64 // of the route's mismatches (a pair may carry several causes)
}

// SignatureCount is one mismatch group.
type SignatureCount struct {
	Signature string
	Service   string
	Route     string
	Count     int64
	Accepted  bool
	Example   string // a request id
}

// NoisePath is a field path and its noise state, with its evidence: the
// route's compared requests and noise baselines (secondary answers or
// repeats with no legacy change between them).
type NoisePath struct {
	Service, Route      string
	Requests, Baselines int64
	PathNoise
}

// AIRouteReport is the statistical verdict of one AI route.
type AIRouteReport struct {
	Service, Route string
	AIReport
}

// Summary is the mismatch summary analysts read.
type Summary struct {
	Routes     []RouteSummary
	Skipped    []SkipCount
	Causes     []CauseCount
	Signatures []SignatureCount
	Noise      []NoisePath
	AI         []AIRouteReport
}

// Failing counts the failing pairs (mismatches not accepted, cube errors).
func (s *Summary) Failing() int64 {
	var n int64
	for _, r := range s.Routes {
		n += r.Mismatches - r.Accepted + r.Errors
	}
	return n
}

// Summary reads the summary from the store: verdicts per route, causes,
// the top signatures (limit), noise paths and AI statistics under ai.
func (s *Store) Summary(ctx context.Context, limit int, ai AIConfig, noise NoiseConfig) (*Summary, error) {
	if limit <= 0 {
		limit = 20
	}
	sum := &Summary{}
	rows, err := s.pool.Query(ctx, s.q(`SELECT service, route, coalesce(operation, ''), min(kind), count(*),
		count(*) FILTER (WHERE verdict = 'match'), count(*) FILTER (WHERE verdict = 'mismatch'),
		count(*) FILTER (WHERE verdict = 'mismatch' AND accepted), count(*) FILTER (WHERE verdict = 'noise'),
		count(*) FILTER (WHERE verdict = 'error'), count(*) FILTER (WHERE verdict = 'moved-on'), count(*) FILTER (WHERE stale),
		coalesce(avg(legacy_latency_ms), 0), coalesce(avg(cube_latency_ms) FILTER (WHERE verdict <> 'error'), 0)
		FROM {s}.pairs WHERE verdict <> 'skipped' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`))
	if err != nil {
		return nil, fmt.Errorf("summary: routes: %w", err)
	}
	for rows.Next() {
		var r RouteSummary
		if err := rows.Scan(&r.Service, &r.Route, &r.Operation, &r.Kind, &r.Pairs, &r.Matches, &r.Mismatches, &r.Accepted, &r.Noise,
			&r.Errors, &r.MovedOn, &r.Stale, &r.LegacyLatencyMS, &r.CubeLatencyMS); err != nil {
			return nil, fmt.Errorf("summary: routes: %w", err)
		}
		sum.Routes = append(sum.Routes, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summary: routes: %w", err)
	}
	rows, err = s.pool.Query(ctx, s.q(`SELECT service, route, skipped, count(*) FROM {s}.pairs
		WHERE verdict = 'skipped' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`))
	if err != nil {
		return nil, fmt.Errorf("summary: skipped: %w", err)
	}
	for rows.Next() {
		var k SkipCount
		if err := rows.Scan(&k.Service, &k.Route, &k.Reason, &k.Count); err != nil {
			return nil, fmt.Errorf("summary: skipped: %w", err)
		}
		sum.Skipped = append(sum.Skipped, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summary: skipped: %w", err)
	}
	rows, err = s.pool.Query(ctx, s.q(`WITH m AS (SELECT service, route, causes FROM {s}.pairs WHERE verdict = 'mismatch')
		SELECT c.service, c.route, c.cause, c.n, c.n::float8 / t.total FROM
		(SELECT service, route, unnest(causes) AS cause, count(*) AS n FROM m GROUP BY 1, 2, 3) c
		JOIN (SELECT service, route, count(*) AS total FROM m GROUP BY 1, 2) t USING (service, route)
		ORDER BY c.service, c.route, c.n DESC, c.cause`))
	if err != nil {
		return nil, fmt.Errorf("summary: causes: %w", err)
	}
	for rows.Next() {
		var c CauseCount
		if err := rows.Scan(&c.Service, &c.Route, &c.Cause, &c.Count, &c.Share); err != nil {
			return nil, fmt.Errorf("summary: causes: %w", err)
		}
		sum.Causes = append(sum.Causes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summary: causes: %w", err)
	}
	rows, err = s.pool.Query(ctx, s.q(`SELECT signature, min(service), min(route), count(*), bool_and(accepted), min(request_id)
		FROM {s}.pairs WHERE signature IS NOT NULL AND verdict IN ('mismatch', 'error', 'moved-on')
		GROUP BY signature ORDER BY count(*) DESC, signature LIMIT $1`), limit)
	if err != nil {
		return nil, fmt.Errorf("summary: signatures: %w", err)
	}
	for rows.Next() {
		var g SignatureCount
		if err := rows.Scan(&g.Signature, &g.Service, &g.Route, &g.Count, &g.Accepted, &g.Example); err != nil {
			return nil, fmt.Errorf("summary: signatures: %w", err)
		}
		sum.Signatures = append(sum.Signatures, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summary: signatures: %w", err)
	}
	counts, err := s.LoadNoise(ctx)
	if err != nil {
		return nil, err
	}
	t := newNoiseTracker(noise.withDefaults())
	ids := make([]RouteID, 0, len(counts))
	for id, n := range counts {
		t.seed(routeKey(id.Service, id.Route), n)
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		return routeKey(ids[i].Service, ids[i].Route) < routeKey(ids[j].Service, ids[j].Route)
	})
	for _, id := range ids {
		reqs, base, paths := t.snapshot(routeKey(id.Service, id.Route))
		if base == 0 {
			continue
		}
		for _, p := range paths {
			sum.Noise = append(sum.Noise, NoisePath{Service: id.Service, Route: id.Route, Requests: reqs, Baselines: base, PathNoise: p})
		}
	}
	aic, err := s.LoadAI(ctx)
	if err != nil {
		return nil, err
	}
	for id, a := range aic {
		sum.AI = append(sum.AI, AIRouteReport{Service: id.Service, Route: id.Route, AIReport: a.Evaluate(ai)})
	}
	sort.Slice(sum.AI, func(i, j int) bool { return sum.AI[i].Route < sum.AI[j].Route })
	return sum, nil
}

// WriteText prints the summary as aligned plain-text tables.
func (s *Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tKIND\tPAIRS\tMATCH\tMISMATCH\tACCEPTED\tNOISE-ONLY\tMOVED-ON\tCUBE-ERR\tSTALE\tMATCH-RATE\tLEGACY-MS\tCUBE-MS")
	for _, r := range s.Routes {
		fmt.Fprintf(tw, "%s %s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f%%\t%.2f\t%.2f\n", r.Service, opRoute(r.Route, r.Operation), r.Kind, r.Pairs, r.Matches,
			r.Mismatches, r.Accepted, r.Noise, r.MovedOn, r.Errors, r.Stale, 100*r.MatchRate(), r.LegacyLatencyMS, r.CubeLatencyMS)
	}
	if len(s.Skipped) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "ROUTE\tSKIPPED-REASON\tREQUESTS (not replayed, not compared)")
		for _, k := range s.Skipped {
			fmt.Fprintf(tw, "%s %s\t%s\t%d\n", k.Service, k.Route, k.Reason, k.Count)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ROUTE\tCAUSE\tMISMATCHES\tSHARE")
	for _, c := range s.Causes {
		fmt.Fprintf(tw, "%s %s\t%s\t%d\t%.1f%%\n", c.Service, c.Route, c.Cause, c.Count, 100*c.Share)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "COUNT\tACCEPTED\tSIGNATURE\tEXAMPLE")
	for _, g := range s.Signatures {
		fmt.Fprintf(tw, "%d\t%v\t%s\t%s\n", g.Count, g.Accepted, g.Signature, g.Example)
	}
	if len(s.Noise) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "ROUTE\tPATH\tCUBE-DIFF-RATE\tCUBE-DIFFS/PAIRS\tNOISE-RATE\tNOISE-DIFFS/BASELINES\tVERDICT")
		for _, n := range s.Noise {
			v := "reported"
			if n.IsNoise {
				v = "noise (suppressed)"
			}
			fmt.Fprintf(tw, "%s %s\t%s\t%.3f%%\t%d/%d\t%.3f%%\t%d/%d\t%s\n", n.Service, n.Route, n.Path, 100*n.RawRate, n.Raw, n.Requests,
				100*n.NoiseRate, n.Noise, n.Baselines, v)
		}
	}
	for _, a := range s.AI {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "AI %s %s: pairs %d, label agreement %.1f%%, mean |confidence diff| %.3f\n", a.Service, a.Route, a.Pairs, 100*a.Agreement, a.MeanConfDiff)
		if a.Labelled > 0 {
			fmt.Fprintf(tw, "  accuracy legacy %.1f%% [%.1f, %.1f], cube %.1f%% [%.1f, %.1f] (Wilson 95%%, n=%d); drop %.1f pp, z=%.2f, p=%.3g\n",
				100*a.LegacyAcc, 100*a.LegacyCI.Lo, 100*a.LegacyCI.Hi, 100*a.CubeAcc, 100*a.CubeCI.Lo, 100*a.CubeCI.Hi, a.Labelled,
				100*a.Drop, a.Z, a.P)
			verdict := "ok"
			if a.Flagged {
				verdict = "FLAGGED: " + a.FlaggedReason
			}
			fmt.Fprintf(tw, "  rollback rule: %s\n", verdict)
		}
	}
	fmt.Fprintf(tw, "\nfailing pairs (mismatches not accepted + cube errors): %d\n", s.Failing())
	return tw.Flush()
}

// String renders the summary as text.
func (s *Summary) String() string {
	var b strings.Builder
	_ = s.WriteText(&b)
	return b.String()
}
