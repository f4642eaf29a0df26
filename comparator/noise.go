package comparator

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// NoiseConfig holds Diffy's thresholds. A differing field is reported only
// when its cube diff rate (legacy vs cube) is above its noise rate (legacy vs
// a second legacy answer) by both a relative and an absolute margin:
// raw > noise, |raw−noise|/(raw+noise) > MinRelative and |raw−noise| > MinAbsolute,
// rates being diffs per compared request. Until a route has a noise baseline
// nothing is suppressed.
type NoiseConfig struct {
	Disabled    bool
	MinRelative float64 // default 0.20
	MinAbsolute float64 // default 0.0003 (0.03% of requests)
}

func (c NoiseConfig) withDefaults() NoiseConfig {
	if c.MinRelative == 0 {
		c.MinRelative = 0.20
	}
	if c.MinAbsolute == 0 {
		c.MinAbsolute = 0.0003
	}
	return c
}

func (c NoiseConfig) validate() error {
	var errs []error
	if c.MinRelative < 0 || c.MinRelative >= 1 || math.IsNaN(c.MinRelative) {
		errs = append(errs, fmt.Errorf("Noise.MinRelative %v: want 0 ≤ x < 1", c.MinRelative))
	}
	if c.MinAbsolute < 0 || c.MinAbsolute >= 1 || math.IsNaN(c.MinAbsolute) {
		errs = append(errs, fmt.Errorf("Noise.MinAbsolute %v: want 0 ≤ x < 1", c.MinAbsolute))
	}
	return errors.Join(errs...)
}

// NoiseCounts are the counters of one route (persisted by the Store so a
// restarted comparator keeps what it learned).
type NoiseCounts struct {
	Requests  int64            // pairs compared (legacy vs cube)
	Baselines int64            // pairs that also had a second legacy answer
	Raw       map[string]int64 // generalised path → legacy-vs-cube diffs
	Noise     map[string]int64 // generalised path → legacy-vs-legacy diffs
}

// noiseTracker holds the counters of every route.
type noiseTracker struct {
	cfg    NoiseConfig
	mu     sync.Mutex
	routes map[string]*NoiseCounts
}

func newNoiseTracker(cfg NoiseConfig) *noiseTracker {
	return &noiseTracker{cfg: cfg, routes: map[string]*NoiseCounts{}}
}

func (t *noiseTracker) counts(route string) *NoiseCounts {
	c := t.routes[route]
	if c == nil {
		c = &NoiseCounts{Raw: map[string]int64{}, Noise: map[string]int64{}}
		t.routes[route] = c
	}
	return c
}

// NoiseObservation is what one pair adds to its route's counters.
type NoiseObservation struct {
	Request     bool     // counted as a compared request (false for a noise-only observation)
	Baseline    bool     // a second legacy answer was compared
	RawPaths    []string // generalised paths differing legacy vs cube
	NoisePaths  []string // generalised paths differing legacy vs legacy
	FromRepeats bool     // the baseline came from a repeated request, not a secondary
}

// observe adds obs and returns, for each raw path, whether it is noise now.
func (t *noiseTracker) observe(route string, obs NoiseObservation) map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts(route)
	if obs.Request {
		c.Requests++
	}
	if obs.Baseline {
		c.Baselines++
	}
	for _, p := range obs.RawPaths {
		c.Raw[p]++
	}
	for _, p := range obs.NoisePaths {
		c.Noise[p]++
	}
	out := make(map[string]bool, len(obs.RawPaths))
	for _, p := range obs.RawPaths {
		out[p] = t.isNoiseLocked(c, p)
	}
	return out
}

// isNoiseLocked applies Diffy's rule to one path.
func (t *noiseTracker) isNoiseLocked(c *NoiseCounts, path string) bool {
	if t.cfg.Disabled || c.Baselines == 0 || c.Requests == 0 {
		return false
	}
	raw := float64(c.Raw[path]) / float64(c.Requests)
	noise := float64(c.Noise[path]) / float64(c.Baselines)
	return !Reportable(raw, noise, t.cfg)
}

// Reportable is Diffy's rule on two rates (diffs per request).
func Reportable(raw, noise float64, cfg NoiseConfig) bool {
	cfg = cfg.withDefaults()
	d := math.Abs(raw - noise)
	return raw > noise && raw+noise > 0 && d/(raw+noise) > cfg.MinRelative && d > cfg.MinAbsolute
}

// seed adds persisted counts (at start-up).
func (t *noiseTracker) seed(route string, in NoiseCounts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts(route)
	c.Requests += in.Requests
	c.Baselines += in.Baselines
	for p, n := range in.Raw {
		c.Raw[p] += n
	}
	for p, n := range in.Noise {
		c.Noise[p] += n
	}
}

// PathNoise is the state of one field path of a route.
type PathNoise struct {
	Path      string
	Raw       int64
	Noise     int64
	RawRate   float64
	NoiseRate float64
	IsNoise   bool
}

// snapshot returns every path of a route, sorted.
func (t *noiseTracker) snapshot(route string) (requests, baselines int64, paths []PathNoise) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.routes[route]
	if c == nil {
		return 0, 0, nil
	}
	seen := map[string]bool{}
	for p := range c.Raw {
		seen[p] = true
	}
	for p := range c.Noise {
		seen[p] = true
	}
	for p := range seen {
		pn := PathNoise{Path: p, Raw: c.Raw[p], Noise: c.Noise[p], IsNoise: t.isNoiseLocked(c, p)}
		if c.Requests > 0 {
			pn.RawRate = float64(pn.Raw) / float64(c.Requests)
		}
		if c.Baselines > 0 {
			pn.NoiseRate = float64(pn.Noise) / float64(c.Baselines)
		}
		paths = append(paths, pn)
	}
	sort.Slice(paths, func(i, j int) bool { return paths[i].Path < paths[j].Path })
	return c.Requests, c.Baselines, paths
}

// repeatCache remembers the legacy answer of recent requests by fingerprint,
// so that two legacy answers to the same request give a noise baseline when
// no secondary legacy instance is configured. FIFO-bounded.
type repeatCache struct {
	mu    sync.Mutex
	max   int
	order []string
	next  int
	m     map[string]repeatEntry
}

type repeatEntry struct {
	at     time.Time // capture time
	mark   time.Time // sync watermark at replay (zero: none)
	target string    // sync target of the watermark
	body   []byte
}

// defaultRepeatWindow is how close two captures must be to count as
// repeats without a watermark showing no change between them.
const defaultRepeatWindow = 2 * time.Second

func newRepeatCache(n int) *repeatCache {
	if n <= 0 {
		return nil
	}
	return &repeatCache{max: n, order: make([]string, 0, n), m: make(map[string]repeatEntry, n)}
}

// swap stores e under key and returns the previous legacy body when the two
// captures straddle no applied legacy change: both were replayed at the
// same sync watermark of the same target (the barrier makes each watermark
// at least its capture time, so an equal one means no transaction committed
// between the captures was applied), or they were captured within window.
func (r *repeatCache) swap(key string, e repeatEntry, window time.Duration) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, ok := r.m[key]
	if !ok {
		if len(r.order) < r.max {
			r.order = append(r.order, key)
		} else {
			delete(r.m, r.order[r.next])
			r.order[r.next] = key
			r.next = (r.next + 1) % r.max
		}
	}
	r.m[key] = e
	if !ok {
		return nil, false
	}
	sameMark := !e.mark.IsZero() && e.target == prev.target && e.mark.Equal(prev.mark)
	close := e.at.Sub(prev.at) <= window && prev.at.Sub(e.at) <= window
	if !sameMark && !close {
		return nil, false
	}
	return prev.body, true
}
