package comparator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// Verdict is the comparator's judgement of one pair.
type Verdict string

// Verdicts. A pair whose only differences are noise is VerdictNoise; an
// accepted mismatch keeps VerdictMismatch with Outcome.Accepted set.
const (
	VerdictMatch    Verdict = "match"
	VerdictMismatch Verdict = "mismatch"
	VerdictNoise    Verdict = "noise"
	VerdictError    Verdict = "error" // the cube failed or timed out
	// VerdictSkipped: shadow did not replay the request (policy reason in
	// Outcome.Skipped); counted, never compared, never failing.
	VerdictSkipped Verdict = "skipped"
	// VerdictMovedOn: the answers differ, but legacy asked again at replay
	// time gives the cube's answer: the data moved on after capture.
	// Counted, not a failure.
	VerdictMovedOn Verdict = "moved-on"
)

// RouteRules are the rules of one route of one service.
type RouteRules struct {
	Service string
	Route   string // route template as captured (RequestEvent.Route)
	Rules   Rules
}

// Config configures a Comparator.
type Config struct {
	Routes   []RouteRules
	Default  Rules // rules of routes not listed (kind json, nothing ignored)
	Noise    NoiseConfig
	AI       AIConfig
	Saju     SajuConfig
	Accepted *Accepted // nil accepts nothing
	// RepeatCache is how many request fingerprints are remembered to learn
	// noise from repeated identical requests when no secondary legacy
	// answer exists (default 10000; -1 disables).
	RepeatCache int
	// RepeatWindow is how far apart two captures of one request may be to
	// be compared as a noise baseline when nothing shows that no legacy
	// write was applied between them (default 2s). Two captures further
	// apart count only when both were replayed against the same sync
	// watermark (commit time of the last applied legacy transaction): then
	// no change was applied between them, and their legacy answers must
	// agree except for noise.
	RepeatWindow time.Duration
	Now          func() time.Time
}

// Comparator judges shadow pairs. It is safe for concurrent use; its noise
// counters and AI counters grow with every Compare.
type Comparator struct {
	cfg     Config
	routes  map[string]*engine
	deflt   *engine
	noise   *noiseTracker
	repeats *repeatCache

	aiMu sync.Mutex
	ai   map[string]*AICounts
}

// New validates cfg and compiles every route's rules. Errors name the
// service, route and field.
func New(cfg Config) (*Comparator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Noise = cfg.Noise.withDefaults()
	cfg.AI = cfg.AI.withDefaults()
	cfg.Saju = cfg.Saju.withDefaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RepeatCache == 0 {
		cfg.RepeatCache = 10000
	}
	if cfg.RepeatWindow <= 0 {
		cfg.RepeatWindow = defaultRepeatWindow
	}
	var errs []error
	c := &Comparator{cfg: cfg, routes: map[string]*engine{}, noise: newNoiseTracker(cfg.Noise),
		repeats: newRepeatCache(cfg.RepeatCache), ai: map[string]*AICounts{}}
	for _, r := range cfg.Routes {
		e, err := compile(r.Rules)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s route %s: compare: %w", r.Service, r.Route, err))
			continue
		}
		c.routes[routeKey(r.Service, r.Route)] = e
	}
	d, err := compile(cfg.Default)
	if err != nil {
		errs = append(errs, fmt.Errorf("default rules: %w", err))
	}
	c.deflt = d
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the numeric settings of cfg (its rules are checked by
// New): one error per bad field, naming it and the allowed range. Zero
// means the default.
func (cfg Config) Validate() error { return cfg.validate() }

func (cfg Config) validate() error {
	errs := []error{cfg.Noise.validate(), cfg.AI.validate(), cfg.Saju.validate()}
	if cfg.RepeatCache < -1 {
		errs = append(errs, fmt.Errorf("RepeatCache %d: want -1 (off), 0 (default 10000) or more", cfg.RepeatCache))
	}
	if cfg.RepeatWindow < 0 {
		errs = append(errs, fmt.Errorf("RepeatWindow %v: want 0 (default 2s) or more", cfg.RepeatWindow))
	}
	return errors.Join(errs...)
}

func routeKey(service, route string) string { return service + " " + route }

func (c *Comparator) engineFor(service, route string) *engine {
	if e, ok := c.routes[routeKey(service, route)]; ok {
		return e
	}
	return c.deflt
}

// AIPair is what an AI pair says, for the accuracy statistics.
type AIPair struct {
	Truth       string
	LegacyLabel string
	CubeLabel   string
	LegacyScore *float64
	CubeScore   *float64
}

// Outcome is the verdict on one pair with everything the store and the
// metrics need.
type Outcome struct {
	RequestID string
	Service   string
	Route     string
	Method    string // of the captured request (as captured: redacted)
	Path      string
	Operation string // the route's operation key, when it defines one
	Skipped   string // policy reason the request was not replayed
	Kind      string
	Verdict   Verdict
	Severity  schemas.Severity
	// Diffs are the reported differences; NoiseDiffs those suppressed as noise.
	Diffs      []schemas.Diff
	NoiseDiffs []schemas.Diff
	Causes     []string
	Signature  string
	Accepted   bool
	AcceptedBy string // reason of the accepting entry
	Stale      bool
	Truncated  bool // a body was cut at the capture cap
	CubeError  string

	LegacyStatus  int
	CubeStatus    int
	LegacyLatency time.Duration
	CubeLatency   time.Duration
	CapturedAt    time.Time
	ReplayedAt    time.Time
	ComparedAt    time.Time

	Birth *BirthFacts // saju routes
	AI    *AIPair     // ai routes
	Noise NoiseObservation
}

// Failing says whether the outcome counts against the cube: a mismatch or
// error that is not accepted.
func (o *Outcome) Failing() bool {
	return (o.Verdict == VerdictMismatch || o.Verdict == VerdictError) && !o.Accepted
}

// Mismatch returns the outcome as a schemas.Mismatch event.
func (o *Outcome) Mismatch() schemas.Mismatch {
	return schemas.Mismatch{V: schemas.Version, RequestID: o.RequestID, Service: o.Service, Route: o.Route,
		Diffs: o.Diffs, Causes: o.Causes, Severity: o.Severity, Signature: o.Signature, Noise: o.Verdict == VerdictNoise}
}

// generalisePath replaces array indices by [*]: "$.a[3].b" → "$.a[*].b".
func generalisePath(p string) string {
	if !strings.Contains(p, "[") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '[' {
			j := i + 1
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(p) && p[j] == ']' {
				b.WriteString("[*]")
				i = j
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func diffPaths(ds []schemas.Diff) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, generalisePath(d.Path))
	}
	sort.Strings(out)
	return uniq(out)
}

// Compare judges one pair. It never fails: answers it cannot parse are
// compared as bytes, and an internal error is reported as an unexplained diff.
func (c *Comparator) Compare(res *schemas.ShadowResult) *Outcome {
	e := c.engineFor(res.Service, res.Route)
	o := &Outcome{
		RequestID: res.RequestID, Service: res.Service, Route: res.Route, Kind: e.kind,
		Method: res.Request.Method, Path: res.Request.Path, Operation: res.Operation,
		Stale: res.Freshness.Stale, CubeError: res.CubeError,
		LegacyStatus: res.Legacy.Status, LegacyLatency: res.Legacy.Latency,
		CapturedAt: res.Request.CapturedAt, ReplayedAt: res.ReplayedAt, ComparedAt: c.cfg.Now(),
	}
	group := opRoute(res.Route, res.Operation)
	if res.Skipped != "" {
		o.Verdict, o.Severity, o.Skipped = VerdictSkipped, schemas.SeverityInfo, res.Skipped
		return o
	}
	if res.Cube == nil || res.CubeError != "" {
		o.Verdict, o.Severity = VerdictError, schemas.SeverityCritical
		if o.CubeError == "" {
			o.CubeError = "no cube answer"
		}
		o.Causes = []string{CauseCubeError}
		o.Signature = Signature(o.Service, group, []string{"cube"}, o.Causes)
		c.accept(o)
		return o
	}
	o.CubeStatus, o.CubeLatency = res.Cube.Status, res.Cube.Latency
	o.Truncated = res.Legacy.BodyTruncated || res.Cube.BodyTruncated
	diffs, lv, cv, err := e.compareResponses(&res.Legacy, res.Cube)
	if err != nil {
		diffs = append(diffs, schemas.Diff{Path: "body", Kind: schemas.DiffChanged, Legacy: mustJSON(err.Error())})
	}

	// Noise baseline: the secondary legacy answer when a secondary is
	// configured; else an earlier legacy answer to the very same request
	// when no legacy write can have been applied between the two (a data
	// change is not noise, and learning it would hide real differences).
	obs := NoiseObservation{Request: true, RawPaths: diffPaths(diffs)}
	if res.Secondary != nil || res.SecondaryError != "" {
		if res.Secondary != nil && res.SecondaryError == "" {
			nd, _, _, err := e.compareResponses(&res.Legacy, res.Secondary)
			if err == nil {
				obs.Baseline, obs.NoisePaths = true, diffPaths(nd)
			}
		}
	} else if c.repeats != nil && len(res.Legacy.Body) > 0 && !res.Freshness.Stale {
		entry := repeatEntry{at: res.Request.CapturedAt, mark: res.Freshness.Watermark, target: res.Freshness.Target, body: res.Legacy.Body}
		if prev, ok := c.repeats.swap(fingerprint(res), entry, c.cfg.RepeatWindow); ok {
			nd, _, _, err := e.compareResponses(&schemas.HTTPResponse{Status: res.Legacy.Status, Headers: res.Legacy.Headers, Body: prev}, &res.Legacy)
			if err == nil {
				obs.Baseline, obs.NoisePaths, obs.FromRepeats = true, diffPaths(nd), true
			}
		}
	}
	o.Noise = obs
	isNoise := c.noise.observe(routeKey(res.Service, group), obs)
	for _, d := range diffs {
		if isNoise[generalisePath(d.Path)] {
			o.NoiseDiffs = append(o.NoiseDiffs, d)
		} else {
			o.Diffs = append(o.Diffs, d)
		}
	}

	if e.kind == KindAI {
		o.AI = c.aiPair(e, res, lv, cv)
	}

	switch {
	case len(o.Diffs) > 0:
		o.Verdict = VerdictMismatch
	case len(o.NoiseDiffs) > 0:
		o.Verdict = VerdictNoise
	default:
		o.Verdict = VerdictMatch
	}
	if o.Verdict != VerdictMismatch {
		o.Severity = schemas.SeverityInfo
		return o
	}
	paths := diffPaths(o.Diffs)
	if e.kind == KindSaju && len(res.Request.Body) > 0 {
		// Only mismatches need the birth data.
		f := birthFacts(res.Request.Body, c.cfg.Saju)
		o.Birth = &f
	}
	o.Causes = c.causes(e, o, paths, lv, cv)
	o.Severity = severity(e.kind, paths)
	if c.movedOn(e, res, isNoise) {
		// Legacy asked again gives the cube's answer: the data changed
		// after capture. Diffs are kept for inspection.
		o.Verdict, o.Severity, o.Causes = VerdictMovedOn, schemas.SeverityInfo, []string{CauseMovedOn}
	}
	o.Signature = Signature(o.Service, group, signaturePaths(e.kind, paths), o.Causes)
	c.accept(o)
	return o
}

// movedOn says whether legacy's answer asked again at replay time equals
// the cube's under the route's rules (differences classified as noise on
// the route do not count, as in the pair itself).
func (c *Comparator) movedOn(e *engine, res *schemas.ShadowResult, isNoise map[string]bool) bool {
	if res.LegacyRecheck == nil || res.Cube == nil {
		return false
	}
	rc := *res.LegacyRecheck
	rc.Body = append([]byte(nil), rc.Body...)
	cube := *res.Cube
	diffs, _, _, err := e.compareResponses(&rc, &cube)
	if err != nil {
		return false
	}
	for _, d := range diffs {
		if !isNoise[generalisePath(d.Path)] {
			return false
		}
	}
	return true
}

// opRoute is the group a pair's signature and noise statistics belong to:
// the route, or the route and its operation key.
func opRoute(route, op string) string {
	if op == "" {
		return route
	}
	return route + " op=" + op
}

// signaturePaths groups the differing paths for the signature. For saju
// answers the fields derived from the pillars (day master, element counts,
// ten gods, luck pillars) collapse to their object, so one convention gives
// one signature whatever elements happen to change in a chart.
func signaturePaths(kind string, paths []string) []string {
	if kind != KindSaju {
		return paths
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		for _, obj := range []string{"$.day_master", "$.elements", "$.ten_gods", "$.luck.pillars"} {
			if strings.HasPrefix(p, obj+".") || strings.HasPrefix(p, obj+"[") {
				p = obj
				break
			}
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return uniq(out)
}

func (c *Comparator) accept(o *Outcome) {
	if ent, ok := c.cfg.Accepted.Match(o.Service, o.Route, o.Signature, o.Causes); ok {
		o.Accepted, o.AcceptedBy = true, ent.Reason
		o.Severity = schemas.SeverityInfo
	}
}

func (c *Comparator) causes(e *engine, o *Outcome, paths []string, lv, cv any) []string {
	var body []string
	var status []string
	for _, p := range paths {
		if p == "status" || strings.HasPrefix(p, "header.") {
			status = append(status, p)
		} else {
			body = append(body, p)
		}
	}
	set := map[string]bool{}
	if len(status) > 0 {
		set[CauseStatus] = true
	}
	if o.Truncated && slices.Contains(body, "body") {
		set[CauseTruncated] = true
		body = slices.DeleteFunc(body, func(p string) bool { return p == "body" })
	}
	if len(body) > 0 {
		switch e.kind {
		case KindSaju:
			f := BirthFacts{}
			if o.Birth != nil {
				f = *o.Birth
			}
			for _, x := range explainSaju(body, f, lv, cv) {
				set[x] = true
			}
		case KindAI:
			label := formatPath(e.label, false)
			for _, p := range body {
				if p == label {
					set[CauseAILabel] = true
				} else {
					set[CauseUnexplained] = true
				}
			}
		default:
			set[CauseUnexplained] = true
		}
	}
	if o.Stale {
		set[CauseStaleCube] = true
	}
	return sortedCauses(set)
}

func severity(kind string, paths []string) schemas.Severity {
	sev := schemas.SeverityMinor
	for _, p := range paths {
		switch {
		case p == "status" || p == "body":
			return schemas.SeverityCritical
		case kind == KindSaju && (strings.HasPrefix(p, "$.pillars") || strings.HasPrefix(p, "$.day_master")),
			kind == KindAI:
			sev = schemas.SeverityMajor
		}
	}
	return sev
}

func fingerprint(res *schemas.ShadowResult) string {
	h := sha256.New()
	for _, s := range []string{res.Service, res.Route, res.Operation, res.Request.Method, res.Request.Path, res.Request.Query} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(res.Request.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// aiPair extracts labels, confidences and the truth, and updates the route's
// running counts.
func (c *Comparator) aiPair(e *engine, res *schemas.ShadowResult, lv, cv any) *AIPair {
	p := &AIPair{Truth: strings.TrimSpace(res.Request.Headers.Get(e.truth))}
	p.LegacyLabel, _ = lookup(lv, e.label).(string)
	p.CubeLabel, _ = lookup(cv, e.label).(string)
	if f, ok := lookup(lv, e.score).(float64); ok {
		p.LegacyScore = &f
	}
	if f, ok := lookup(cv, e.score).(float64); ok {
		p.CubeScore = &f
	}
	c.aiMu.Lock()
	defer c.aiMu.Unlock()
	a := c.ai[routeKey(res.Service, res.Route)]
	if a == nil {
		a = &AICounts{}
		c.ai[routeKey(res.Service, res.Route)] = a
	}
	a.add(p)
	return p
}

func (a *AICounts) add(p *AIPair) {
	if p.LegacyLabel != "" && p.CubeLabel != "" {
		a.Pairs++
		if strings.EqualFold(p.LegacyLabel, p.CubeLabel) {
			a.Agree++
		}
	}
	if p.LegacyScore != nil && p.CubeScore != nil {
		a.ConfPairs++
		a.ConfDiffSum += math.Abs(*p.LegacyScore - *p.CubeScore)
	}
	if p.Truth != "" {
		a.Labelled++
		if strings.EqualFold(p.LegacyLabel, p.Truth) {
			a.LegacyCorrect++
		}
		if strings.EqualFold(p.CubeLabel, p.Truth) {
			a.CubeCorrect++
		}
	}
}

// AIReport returns the statistics of an AI route seen by this process
// (since start, plus what SeedAI added).
func (c *Comparator) AIReport(service, route string) AIReport {
	c.aiMu.Lock()
	a := AICounts{}
	if p := c.ai[routeKey(service, route)]; p != nil {
		a = *p
	}
	c.aiMu.Unlock()
	return a.Evaluate(c.cfg.AI)
}

// SeedAI adds persisted AI counts of a route (at start-up).
func (c *Comparator) SeedAI(service, route string, in AICounts) {
	c.aiMu.Lock()
	defer c.aiMu.Unlock()
	a := c.ai[routeKey(service, route)]
	if a == nil {
		a = &AICounts{}
		c.ai[routeKey(service, route)] = a
	}
	a.Pairs += in.Pairs
	a.Agree += in.Agree
	a.ConfDiffSum += in.ConfDiffSum
	a.ConfPairs += in.ConfPairs
	a.Labelled += in.Labelled
	a.LegacyCorrect += in.LegacyCorrect
	a.CubeCorrect += in.CubeCorrect
}

// SeedNoise adds persisted noise counters of a route (at start-up).
func (c *Comparator) SeedNoise(service, route string, n NoiseCounts) {
	c.noise.seed(routeKey(service, route), n)
}

// NoiseState returns the noise counters of a route and, per path, whether
// it is currently classified as noise.
func (c *Comparator) NoiseState(service, route string) (requests, baselines int64, paths []PathNoise) {
	return c.noise.snapshot(routeKey(service, route))
}
