package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// LoadConfig configures a traffic run.
type LoadConfig struct {
	// SajuURL is the base URL that receives POST /api/saju/chart: the tap in
	// front of the legacy saju service, or the service itself.
	SajuURL string
	// AIURL is the base URL for POST /api/ai/analyze (tap or service); empty
	// sends no AI requests. Each AI request carries the chart the saju
	// service answered and X-Truth-Label computed by TruthLabel.
	AIURL string
	// Rate is births per second (0 = as fast as Concurrency allows).
	Rate float64
	// Duration bounds the run (0 = until Count births or ctx ends).
	Duration time.Duration
	// Count bounds the number of births (0 = until Duration or ctx ends).
	Count       int
	Concurrency int // parallel requests (default 4)
	Gen         GenConfig
	Client      *http.Client // default: a client with a 10 s timeout
	// DryRun adds X-Shadow-Request: 1 so the services write nothing.
	DryRun bool
}

// Validate checks the run configuration.
func (c *LoadConfig) Validate() error {
	if c.SajuURL == "" {
		return errors.New("loadgen: saju URL is required")
	}
	if c.Rate < 0 {
		return fmt.Errorf("loadgen: rate %v is negative", c.Rate)
	}
	if c.Duration <= 0 && c.Count <= 0 {
		return errors.New("loadgen: set a duration or a count, or the run never ends")
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("loadgen: concurrency %d is negative", c.Concurrency)
	}
	return c.Gen.Validate()
}

// RouteStats summarises one route's requests.
type RouteStats struct {
	Sent      int
	Status    map[int]int
	Transport int // requests that got no HTTP answer
	latencies []time.Duration
}

// Summary is what a run sent and got back.
type Summary struct {
	Births     int
	Kinds      map[string]int
	Lunar      int
	UnknownHr  int
	Users      int
	Routes     map[string]*RouteStats
	Truth      map[string]int // truth labels attached to AI requests
	AICorrect  int            // AI answers equal to the truth label
	Elapsed    time.Duration
	FirstError string

	users map[string]bool
}

func newSummary() *Summary {
	return &Summary{Kinds: map[string]int{}, Routes: map[string]*RouteStats{}, Truth: map[string]int{}, users: map[string]bool{}}
}

func (s *Summary) route(r string) *RouteStats {
	rs, ok := s.Routes[r]
	if !ok {
		rs = &RouteStats{Status: map[int]int{}}
		s.Routes[r] = rs
	}
	return rs
}

// Print writes a human-readable summary.
func (s *Summary) Print(w io.Writer) {
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Births) / s.Elapsed.Seconds()
	}
	fmt.Fprintf(w, "loadgen: %d births in %s (%.1f/s), %d distinct users, %d lunar input, %d unknown hour\n",
		s.Births, s.Elapsed.Round(time.Millisecond), rate, s.Users, s.Lunar, s.UnknownHr)
	kinds := make([]string, 0, len(s.Kinds))
	for k := range s.Kinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  kind %-16s %d\n", k, s.Kinds[k])
	}
	routes := make([]string, 0, len(s.Routes))
	for r := range s.Routes {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		rs := s.Routes[r]
		codes := make([]int, 0, len(rs.Status))
		for c := range rs.Status {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d×%d", rs.Status[c], c))
		}
		fmt.Fprintf(w, "  POST %-18s sent %d: %s; no answer %d; latency p50 %s p95 %s p99 %s\n", r, rs.Sent,
			strings.Join(parts, " "), rs.Transport, pct(rs.latencies, 50), pct(rs.latencies, 95), pct(rs.latencies, 99))
	}
	if n := sumMap(s.Truth); n > 0 {
		fmt.Fprintf(w, "  AI truth labels %v; answers equal to the truth: %d of %d (%.1f%%)\n", s.Truth, s.AICorrect, n, 100*float64(s.AICorrect)/float64(n))
	}
	if s.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", s.FirstError)
	}
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}

// RunLoad sends generated births until Count, Duration or ctx ends, and
// returns the summary. It returns an error only for a bad configuration;
// failed requests are counted in the summary.
func RunLoad(ctx context.Context, cfg LoadConfig) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	gen, err := NewGenerator(cfg.Gen)
	if err != nil {
		return nil, err
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	conc := cfg.Concurrency
	if conc == 0 {
		conc = 4
	}
	// The duration ends the production of births; requests in flight still
	// finish (they end only with ctx).
	prod := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		prod, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	sum := newSummary()
	var mu sync.Mutex
	jobs := make(chan Generated)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range jobs {
				sendBirth(ctx, client, cfg, g, sum, &mu)
			}
		}()
	}
	start := time.Now()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	next := start
produce:
	for i := 0; cfg.Count == 0 || i < cfg.Count; i++ {
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-prod.Done():
					t.Stop()
					break produce
				case <-t.C:
				}
			}
		}
		g := gen.Next()
		select {
		case <-prod.Done():
			break produce
		case jobs <- g:
		}
	}
	close(jobs)
	wg.Wait()
	sum.Elapsed = time.Since(start)
	sum.Users = len(sum.users)
	return sum, nil
}

func sendBirth(ctx context.Context, client *http.Client, cfg LoadConfig, g Generated, sum *Summary, mu *sync.Mutex) {
	user := g.Request.UserID
	req := g.Request
	req.UserID = "" // the user travels in X-User-Id, as the HEAL7 front end sends it
	body, _ := json.Marshal(req)
	hdr := map[string]string{HeaderUserID: user}
	if cfg.DryRun {
		hdr[HeaderShadow] = "1"
	}
	code, answer, lat, err := postJSON(ctx, client, strings.TrimRight(cfg.SajuURL, "/")+"/api/saju/chart", body, hdr)
	mu.Lock()
	sum.Births++
	sum.Kinds[g.Kind]++
	sum.users[user] = true
	if g.Request.Calendar == "lunar" {
		sum.Lunar++
	}
	if g.Request.BirthTime == nil || *g.Request.BirthTime == "" {
		sum.UnknownHr++
	}
	record(sum, "/api/saju/chart", code, lat, err)
	mu.Unlock()
	if err != nil || code != http.StatusOK || cfg.AIURL == "" {
		return
	}
	var doc ChartResponse
	if err := json.Unmarshal(answer, &doc); err != nil {
		mu.Lock()
		if sum.FirstError == "" {
			sum.FirstError = fmt.Sprintf("chart answer is not a chart: %v", err)
		}
		mu.Unlock()
		return
	}
	ch, err := ChartFromPillars(doc.Pillars.Year, doc.Pillars.Month, doc.Pillars.Day, deref(doc.Pillars.Hour))
	if err != nil {
		mu.Lock()
		if sum.FirstError == "" {
			sum.FirstError = fmt.Sprintf("chart answer pillars: %v", err)
		}
		mu.Unlock()
		return
	}
	truth := TruthLabel(ch)
	hdr[HeaderTruthLabel] = truth
	code, answer, lat, err = postJSON(ctx, client, strings.TrimRight(cfg.AIURL, "/")+"/api/ai/analyze", answer, hdr)
	mu.Lock()
	defer mu.Unlock()
	sum.Truth[truth]++
	record(sum, "/api/ai/analyze", code, lat, err)
	var ar AnalyzeResponse
	if err == nil && code == http.StatusOK && json.Unmarshal(answer, &ar) == nil && ar.Label == truth {
		sum.AICorrect++
	}
}

func record(sum *Summary, route string, code int, lat time.Duration, err error) {
	rs := sum.route(route)
	rs.Sent++
	if err != nil {
		rs.Transport++
		if sum.FirstError == "" {
			sum.FirstError = err.Error()
		}
		return
	}
	rs.Status[code]++
	rs.latencies = append(rs.latencies, lat)
}

func postJSON(ctx context.Context, client *http.Client, url string, body []byte, hdr map[string]string) (int, []byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, 0, fmt.Errorf("request %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	lat := time.Since(start)
	if err != nil {
		return 0, nil, lat, fmt.Errorf("POST %s: read answer: %w", url, err)
	}
	return resp.StatusCode, data, lat, nil
}
