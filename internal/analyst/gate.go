package analyst

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/fileerr"
	"github.com/heal7/shadowcube/schemas"
)

// CriteriaVersion is the version of the gate criteria file format.
const CriteriaVersion = 1

// Toggle turns a criterion on or off (on when not given).
type Toggle struct {
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled"`
}

// On says whether the criterion is evaluated.
func (t Toggle) On() bool { return t.Enabled == nil || *t.Enabled }

// Criteria are the gate's criteria. A file names only what it changes;
// every other value keeps its default (DefaultCriteria):
//
//	version: 1
//	min_pairs:     {min: 1000}
//	open_mismatch: {max_rate: 0.0005, kinds: [saju, json]}
//	ai_accuracy:   {max_drop: 0.05, alpha: 0.05, min_samples: 30}
//	sync_lag:      {max_p99: 30s, targets: [saju-cube]}
//	reconcile:     {max_age: 24h, targets: [saju-cube]}
//	dlq:           {enabled: false}
//	stale:         {max_share: 0.01}
//	cube_errors:   {max_rate: 0.005}
//	marginal: 75
type Criteria struct {
	Version  int `yaml:"version" json:"version"`
	MinPairs struct {
		Toggle `yaml:",inline"`
		Min    int64 `yaml:"min" json:"min"`
	} `yaml:"min_pairs" json:"min_pairs"`
	OpenMismatch struct {
		Toggle  `yaml:",inline"`
		MaxRate float64  `yaml:"max_rate" json:"max_rate"`
		Kinds   []string `yaml:"kinds" json:"kinds"`
	} `yaml:"open_mismatch" json:"open_mismatch"`
	AIAccuracy struct {
		Toggle     `yaml:",inline"`
		MaxDrop    float64 `yaml:"max_drop" json:"max_drop"`
		Alpha      float64 `yaml:"alpha" json:"alpha"`
		MinSamples int64   `yaml:"min_samples" json:"min_samples"`
	} `yaml:"ai_accuracy" json:"ai_accuracy"`
	SyncLag struct {
		Toggle  `yaml:",inline"`
		MaxP99  time.Duration `yaml:"max_p99" json:"max_p99"`
		Targets []string      `yaml:"targets" json:"targets,omitempty"`
	} `yaml:"sync_lag" json:"sync_lag"`
	Reconcile struct {
		Toggle  `yaml:",inline"`
		MaxAge  time.Duration `yaml:"max_age" json:"max_age"`
		Targets []string      `yaml:"targets" json:"targets,omitempty"`
	} `yaml:"reconcile" json:"reconcile"`
	DLQ struct {
		Toggle `yaml:",inline"`
	} `yaml:"dlq" json:"dlq"`
	Stale struct {
		Toggle   `yaml:",inline"`
		MaxShare float64 `yaml:"max_share" json:"max_share"`
	} `yaml:"stale" json:"stale"`
	CubeErrors struct {
		Toggle  `yaml:",inline"`
		MaxRate float64 `yaml:"max_rate" json:"max_rate"`
	} `yaml:"cube_errors" json:"cube_errors"`
	// Marginal is the group score (0..100) from which a group that is not
	// a full pass is "marginal" rather than "fail" (Kayenta's marginal
	// threshold); default 75.
	Marginal float64 `yaml:"marginal" json:"marginal"`
}

// DefaultCriteria returns the built-in criteria.
func DefaultCriteria() *Criteria {
	c := &Criteria{Version: CriteriaVersion, Marginal: 75}
	c.MinPairs.Min = 1000
	c.OpenMismatch.MaxRate = 0.0005
	c.OpenMismatch.Kinds = []string{comparator.KindSaju, "json"}
	c.AIAccuracy.MaxDrop, c.AIAccuracy.Alpha, c.AIAccuracy.MinSamples = 0.05, 0.05, 30
	c.SyncLag.MaxP99 = 30 * time.Second
	c.Reconcile.MaxAge = 24 * time.Hour
	c.Stale.MaxShare = 0.01
	c.CubeErrors.MaxRate = 0.005
	return c
}

// LoadCriteria reads a criteria file over the defaults.
func LoadCriteria(path string) (*Criteria, error) {
	return fileerr.Read(path, "gate criteria", ParseCriteria)
}

// ParseCriteria parses criteria YAML over the defaults; errors name the
// file, line and field.
func ParseCriteria(name string, data []byte) (*Criteria, error) {
	root, err := fileerr.Document(name, data, "version: 1 and the criteria to change")
	if err != nil {
		return nil, err
	}
	c := DefaultCriteria()
	c.Version = 0
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fileerr.YAML(name, err)
	}
	line := func(field string) int {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == field {
				return root.Content[i].Line
			}
		}
		return root.Line
	}
	var errs []error
	bad := func(field, msg string) {
		errs = append(errs, &fileerr.Error{File: name, Line: line(strings.SplitN(field, ".", 2)[0]), Field: field, Msg: msg})
	}
	if c.Version != CriteriaVersion {
		bad("version", fmt.Sprintf("%d: this build reads version %d", c.Version, CriteriaVersion))
	}
	if c.MinPairs.Min < 1 {
		bad("min_pairs.min", fmt.Sprintf("%d: want at least 1", c.MinPairs.Min))
	}
	for _, x := range []struct {
		field string
		v     float64
	}{{"open_mismatch.max_rate", c.OpenMismatch.MaxRate}, {"ai_accuracy.max_drop", c.AIAccuracy.MaxDrop},
		{"ai_accuracy.alpha", c.AIAccuracy.Alpha}, {"stale.max_share", c.Stale.MaxShare}, {"cube_errors.max_rate", c.CubeErrors.MaxRate}} {
		if !(x.v > 0 && x.v < 1) {
			bad(x.field, fmt.Sprintf("%v: want 0 < x < 1", x.v))
		}
	}
	if c.AIAccuracy.MinSamples < 1 {
		bad("ai_accuracy.min_samples", fmt.Sprintf("%d: want at least 1", c.AIAccuracy.MinSamples))
	}
	if c.SyncLag.MaxP99 <= 0 {
		bad("sync_lag.max_p99", fmt.Sprintf("%v: want a positive duration such as 30s", c.SyncLag.MaxP99))
	}
	if c.Reconcile.MaxAge <= 0 {
		bad("reconcile.max_age", fmt.Sprintf("%v: want a positive duration such as 24h", c.Reconcile.MaxAge))
	}
	if !(c.Marginal >= 0 && c.Marginal <= 100) {
		bad("marginal", fmt.Sprintf("%v: want 0..100", c.Marginal))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Criterion names and their groups.
const (
	CritMinPairs     = "min_pairs"
	CritOpenMismatch = "open_mismatch"
	CritAIAccuracy   = "ai_accuracy"
	CritSyncLag      = "sync_lag"
	CritReconcile    = "reconcile"
	CritDLQ          = "dlq"
	CritStale        = "stale"
	CritCubeErrors   = "cube_errors"
)

// Groups maps each criterion to its group; groups are scored Kayenta
// style.
var Groups = map[string]string{
	CritMinPairs: "volume", CritOpenMismatch: "correctness", CritAIAccuracy: "correctness",
	CritSyncLag: "sync", CritReconcile: "sync", CritDLQ: "sync", CritStale: "health", CritCubeErrors: "health",
}

var groupOrder = []string{"volume", "correctness", "sync", "health"}

// Check results.
const (
	Pass   = "pass"
	Fail   = "fail"
	NoData = "no data"
)

// Check is one criterion measured on one subject (a route, a sync target,
// the DLQ).
type Check struct {
	Criterion string  `json:"criterion"`
	Group     string  `json:"group"`
	Subject   string  `json:"subject"`
	Measured  float64 `json:"measured"`
	Shown     string  `json:"measured_text"` // measured as printed
	Threshold string  `json:"threshold"`
	Result    string  `json:"result"` // pass, fail, no data
	Detail    string  `json:"detail,omitempty"`
}

// GroupScore is a criterion group's score: the share of its checks that
// pass (0..100), and pass (100), marginal (≥ Criteria.Marginal) or fail.
type GroupScore struct {
	Group  string  `json:"group"`
	Score  float64 `json:"score"`
	Result string  `json:"result"`
	Checks int     `json:"checks"`
	Passed int     `json:"passed"`
}

// GateVerdict is the verdict on one service's cube.
type GateVerdict struct {
	Service string       `json:"service"`
	Go      bool         `json:"go"`
	Verdict string       `json:"verdict"` // go, no-go: not enough samples, no-go: <failed criteria>
	Checks  []Check      `json:"checks"`
	Groups  []GroupScore `json:"groups"`
}

// Gate is the gate's answer: a verdict per service; Go when every one is go.
type Gate struct {
	Go       bool          `json:"go"`
	Services []GateVerdict `json:"services"`
	Criteria *Criteria     `json:"criteria"`
}

// GateInputs are the gate's inputs outside the store. A nil JetStream
// makes sync lag and DLQ "no data".
type GateInputs struct {
	JS jetstream.JetStream
	// Accepted decides acceptance now (see Options.Accepted); nil: as
	// recorded at compare time.
	Accepted *comparator.Accepted
}

// Evaluate runs the gate over the window and service of q (narrower
// filters are ignored).
func Evaluate(ctx context.Context, st *comparator.Store, q Query, c *Criteria, in GateInputs, now time.Time) (*Gate, error) {
	wq := Query{Since: q.Since, Until: q.Until, Service: q.Service}
	f, err := Build(ctx, st, wq, Options{Now: func() time.Time { return now }, Examples: -1, TopSignatures: 1, TopPaths: 1, Accepted: in.Accepted})
	if err != nil {
		return nil, err
	}
	return evaluateFigures(ctx, st, wq, c, in, f, now)
}

func evaluateGate(ctx context.Context, st *comparator.Store, q Query, opts Options, f *Figures, now time.Time) (*Gate, error) {
	in := opts.Inputs
	if in.Accepted == nil {
		in.Accepted = opts.Accepted
	}
	if q.Filtered() {
		return Evaluate(ctx, st, q, opts.Criteria, in, now)
	}
	return evaluateFigures(ctx, st, q, opts.Criteria, in, f, now)
}

func pct(x float64) string { return fmt.Sprintf("%.3f%%", 100*x) }

func evaluateFigures(ctx context.Context, st *comparator.Store, q Query, c *Criteria, in GateInputs, f *Figures, now time.Time) (*Gate, error) {
	if c == nil {
		c = DefaultCriteria()
	}
	g := &Gate{Go: true, Criteria: c}
	services := f.Services
	if q.Service != "" && len(services) == 0 {
		services = []Service{{Service: q.Service}}
	}
	syncLag, dlq := map[string][]float64{}, map[string]uint64{}
	var natsErr error
	if in.JS != nil && (c.SyncLag.On() || c.DLQ.On()) {
		syncLag, natsErr = readSyncLag(ctx, in.JS)
		if natsErr == nil {
			dlq, natsErr = readDLQ(ctx, in.JS)
		}
	}
	runs, err := latestReconciles(ctx, st)
	if err != nil {
		return nil, err
	}
	for _, svc := range services {
		v := GateVerdict{Service: svc.Service}
		add := func(ch Check) {
			ch.Group = Groups[ch.Criterion]
			v.Checks = append(v.Checks, ch)
		}
		if len(svc.Routes) == 0 {
			add(Check{Criterion: CritMinPairs, Subject: svc.Service, Shown: "0", Threshold: fmt.Sprintf(">= %d per route", c.MinPairs.Min), Result: NoData,
				Detail: "no compared pairs in the window"})
		}
		for _, r := range svc.Routes {
			s := r.Stats
			if s.Pairs == 0 && s.Skipped > 0 {
				continue // never replayed by policy (writes...): nothing to judge
			}
			subject := r.Route
			if c.MinPairs.On() {
				res := Pass
				if s.Pairs < c.MinPairs.Min {
					res = Fail
				}
				add(Check{Criterion: CritMinPairs, Subject: subject, Measured: float64(s.Pairs), Shown: fmt.Sprint(s.Pairs),
					Threshold: fmt.Sprintf(">= %d", c.MinPairs.Min), Result: res})
			}
			if c.OpenMismatch.On() && slices.Contains(c.OpenMismatch.Kinds, r.Kind) {
				ch := Check{Criterion: CritOpenMismatch, Subject: subject, Measured: s.OpenCI.Hi,
					Shown:     fmt.Sprintf("%s (upper 95%%; %d open of %d, point %s)", pct(s.OpenCI.Hi), s.Open, s.Pairs-s.Errors, pct(s.OpenRate)),
					Threshold: "<= " + pct(c.OpenMismatch.MaxRate), Result: Pass}
				switch {
				case s.Pairs-s.Errors <= 0:
					ch.Result, ch.Shown = NoData, "no answered pairs"
				case s.OpenCI.Hi > c.OpenMismatch.MaxRate:
					ch.Result = Fail
				}
				add(ch)
			}
			if c.AIAccuracy.On() && r.AI != nil {
				a := evaluateAI(r.AI.AICounts, comparator.AIConfig{MaxDrop: c.AIAccuracy.MaxDrop, Alpha: c.AIAccuracy.Alpha, MinSamples: c.AIAccuracy.MinSamples})
				ch := Check{Criterion: CritAIAccuracy, Subject: subject, Measured: a.Drop,
					Shown:     fmt.Sprintf("drop %.1f pp (legacy %.1f%%, cube %.1f%%, p=%.3g, n=%d)", 100*a.Drop, 100*a.LegacyAcc, 100*a.CubeAcc, a.P, a.Labelled),
					Threshold: fmt.Sprintf("not > %.1f pp at p < %.2g", 100*c.AIAccuracy.MaxDrop, c.AIAccuracy.Alpha), Result: Pass}
				switch {
				case a.Flagged:
					ch.Result = Fail
				case a.Labelled < c.AIAccuracy.MinSamples:
					ch.Result, ch.Detail = NoData, a.Verdict
				}
				add(ch)
			}
			if c.Stale.On() {
				ch := Check{Criterion: CritStale, Subject: subject, Measured: s.StaleShare, Shown: pct(s.StaleShare),
					Threshold: "<= " + pct(c.Stale.MaxShare), Result: Pass}
				switch {
				case s.Pairs == 0:
					ch.Result = NoData
				case s.StaleShare > c.Stale.MaxShare:
					ch.Result = Fail
				}
				add(ch)
			}
			if c.CubeErrors.On() {
				ch := Check{Criterion: CritCubeErrors, Subject: subject, Measured: s.ErrorRate, Shown: pct(s.ErrorRate),
					Threshold: "<= " + pct(c.CubeErrors.MaxRate), Result: Pass}
				switch {
				case s.Pairs == 0:
					ch.Result = NoData
				case s.ErrorRate > c.CubeErrors.MaxRate:
					ch.Result = Fail
				}
				add(ch)
			}
		}
		if c.SyncLag.On() {
			thr := "< " + c.SyncLag.MaxP99.String()
			switch {
			case in.JS == nil:
				add(Check{Criterion: CritSyncLag, Subject: "sync", Shown: "-", Threshold: thr, Result: NoData, Detail: "no NATS URL configured (SHADOWCUBE_NATS_URL)"})
			case natsErr != nil:
				add(Check{Criterion: CritSyncLag, Subject: "sync", Shown: "-", Threshold: thr, Result: NoData, Detail: natsErr.Error()})
			default:
				targets := pickTargets(c.SyncLag.Targets, svc.Service, keys(syncLag))
				if len(targets) == 0 {
					add(Check{Criterion: CritSyncLag, Subject: "sync", Shown: "-", Threshold: thr, Result: NoData,
						Detail: fmt.Sprintf("no sync watermark of a target named %s* in KV %s", svc.Service, schemas.KVBucket)})
				}
				for _, t := range targets {
					lags := syncLag[t]
					if len(lags) == 0 {
						add(Check{Criterion: CritSyncLag, Subject: t, Shown: "-", Threshold: thr, Result: NoData, Detail: "no watermark"})
						continue
					}
					p99 := quantile(lags, 0.99)
					res := Pass
					if p99 >= c.SyncLag.MaxP99.Seconds() {
						res = Fail
					}
					add(Check{Criterion: CritSyncLag, Subject: t, Measured: p99, Shown: fmt.Sprintf("p99 %.3fs (%d watermarks)", p99, len(lags)), Threshold: thr, Result: res})
				}
			}
		}
		if c.Reconcile.On() {
			thr := "clean, younger than " + c.Reconcile.MaxAge.String()
			targets := pickTargets(c.Reconcile.Targets, svc.Service, keys(runs))
			if len(targets) == 0 {
				add(Check{Criterion: CritReconcile, Subject: "reconcile", Shown: "-", Threshold: thr, Result: NoData,
					Detail: fmt.Sprintf("no reconcile result of a target named %s* in the store (run shadowcube reconcile)", svc.Service)})
			}
			for _, t := range targets {
				run, ok := runs[t]
				if !ok {
					add(Check{Criterion: CritReconcile, Subject: t, Shown: "-", Threshold: thr, Result: NoData, Detail: "never reconciled"})
					continue
				}
				age := now.Sub(run.FinishedAt)
				ch := Check{Criterion: CritReconcile, Subject: t, Measured: age.Seconds(),
					Shown: fmt.Sprintf("%d differences, %s ago", run.Differences, age.Round(time.Second)), Threshold: thr, Result: Pass}
				if !run.Clean || age > c.Reconcile.MaxAge {
					ch.Result = Fail
				}
				add(ch)
			}
		}
		if c.DLQ.On() {
			switch {
			case in.JS == nil:
				add(Check{Criterion: CritDLQ, Subject: "dlq", Shown: "-", Threshold: "0 messages", Result: NoData, Detail: "no NATS URL configured (SHADOWCUBE_NATS_URL)"})
			case natsErr != nil:
				add(Check{Criterion: CritDLQ, Subject: "dlq", Shown: "-", Threshold: "0 messages", Result: NoData, Detail: natsErr.Error()})
			default:
				var total uint64
				var parts []string
				for _, subj := range keys(dlq) {
					total += dlq[subj]
					parts = append(parts, fmt.Sprintf("%s=%d", subj, dlq[subj]))
				}
				res := Pass
				if total > 0 {
					res = Fail
				}
				add(Check{Criterion: CritDLQ, Subject: "dlq.>", Measured: float64(total), Shown: fmt.Sprintf("%d messages", total), Threshold: "0 messages",
					Result: res, Detail: strings.Join(parts, " ")})
			}
		}
		v.Groups = score(v.Checks, c.Marginal)
		v.Go, v.Verdict = verdict(v.Checks)
		if !v.Go {
			g.Go = false
		}
		g.Services = append(g.Services, v)
	}
	if len(g.Services) == 0 {
		g.Go = false
		g.Services = append(g.Services, GateVerdict{Service: "(none)", Verdict: "no-go: not enough samples",
			Checks: []Check{{Criterion: CritMinPairs, Group: "volume", Subject: "(no service)", Shown: "0", Threshold: fmt.Sprintf(">= %d per route", c.MinPairs.Min), Result: NoData}}})
	}
	return g, nil
}

// WriteText prints one line per check (criterion, subject, measured,
// threshold, result), the group scores and the verdict of each service.
func (g *Gate) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, v := range g.Services {
		fmt.Fprintf(tw, "SERVICE %s\n", v.Service)
		fmt.Fprintln(tw, "CRITERION\tSUBJECT\tMEASURED\tTHRESHOLD\tRESULT")
		for _, ch := range v.Checks {
			res := ch.Result
			if ch.Detail != "" {
				res += " (" + ch.Detail + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.Criterion, ch.Subject, ch.Shown, ch.Threshold, res)
		}
		for _, gs := range v.Groups {
			fmt.Fprintf(tw, "group %s\tscore %.0f\t%s\t%d/%d checks pass\t\n", gs.Group, gs.Score, gs.Result, gs.Passed, gs.Checks)
		}
		fmt.Fprintf(tw, "verdict %s: %s\n\n", v.Service, v.Verdict)
	}
	return tw.Flush()
}

func score(checks []Check, marginal float64) []GroupScore {
	var out []GroupScore
	for _, grp := range groupOrder {
		s := GroupScore{Group: grp}
		for _, ch := range checks {
			if ch.Group != grp {
				continue
			}
			s.Checks++
			if ch.Result == Pass {
				s.Passed++
			}
		}
		if s.Checks == 0 {
			continue
		}
		s.Score = math.Round(1000*float64(s.Passed)/float64(s.Checks)) / 10
		switch {
		case s.Passed == s.Checks:
			s.Result = Pass
		case s.Score >= marginal:
			s.Result = "marginal"
		default:
			s.Result = Fail
		}
		out = append(out, s)
	}
	return out
}

// verdict: go only when every check passes; a volume failure or any
// check without data is "not enough samples", never go.
func verdict(checks []Check) (bool, string) {
	var failed []string
	short := false
	for _, ch := range checks {
		switch {
		case ch.Result == NoData, ch.Result == Fail && ch.Criterion == CritMinPairs:
			short = true
		case ch.Result == Fail && !slices.Contains(failed, ch.Criterion):
			failed = append(failed, ch.Criterion)
		}
	}
	switch {
	case short:
		return false, "no-go: not enough samples"
	case len(failed) > 0:
		return false, "no-go: " + strings.Join(failed, ", ")
	case len(checks) == 0:
		return false, "no-go: not enough samples"
	}
	return true, "go"
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pickTargets returns the configured targets, or the known ones named
// after the service (prefix).
func pickTargets(configured []string, service string, known []string) []string {
	if len(configured) > 0 {
		return configured
	}
	var out []string
	for _, k := range known {
		if strings.HasPrefix(k, service) {
			out = append(out, k)
		}
	}
	return out
}

func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// readSyncLag reads every target's watermark history from the KV bucket:
// for each kept revision, the lag at apply (applied_at − commit_time).
func readSyncLag(ctx context.Context, js jetstream.JetStream) (map[string][]float64, error) {
	out := map[string][]float64{}
	kv, err := js.KeyValue(ctx, schemas.KVBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gate: sync watermarks: %w", err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("gate: sync watermarks: %w", err)
	}
	var names []string
	for k := range lister.Keys() {
		if strings.HasPrefix(k, "sync-watermark.") {
			names = append(names, k)
		}
	}
	for _, k := range names {
		hist, err := kv.History(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, fmt.Errorf("gate: watermark %s: %w", k, err)
		}
		for _, e := range hist {
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			w, err := schemas.DecodeWatermark(e.Value())
			if err != nil || w.CommitTime.IsZero() || w.AppliedAt.IsZero() {
				continue
			}
			out[w.Target] = append(out[w.Target], max(0, w.AppliedAt.Sub(w.CommitTime).Seconds()))
		}
	}
	return out, nil
}

// readDLQ counts the messages on every dlq.<stage> subject.
func readDLQ(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	s, err := js.Stream(ctx, schemas.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gate: DLQ: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil, fmt.Errorf("gate: DLQ: %w", err)
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		out[subj] = n
	}
	return out, nil
}

// ReconcileRun is one reconcile's result for one target, as the gate reads it.
type ReconcileRun struct {
	Target      string    `json:"target"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	Clean       bool      `json:"clean"`
	Differences int64     `json:"differences"`
	Tables      int       `json:"tables"`
	Detail      string    `json:"detail,omitempty"`
}

// RecordReconcile stores a reconcile result (cmd/shadowcube/reconcile.go
// calls it for each target when SHADOWCUBE_STORE_DATABASE_URL is set).
func RecordReconcile(ctx context.Context, st *comparator.Store, r ReconcileRun) error {
	if r.FinishedAt.IsZero() {
		r.FinishedAt = time.Now()
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = r.FinishedAt
	}
	if _, err := st.Pool().Exec(ctx, st.SQL(`INSERT INTO {s}.reconcile_runs (target, started_at, finished_at, clean, differences, tables, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`), r.Target, r.StartedAt, r.FinishedAt, r.Clean, r.Differences, r.Tables, r.Detail); err != nil {
		return fmt.Errorf("record reconcile of %s: %w", r.Target, err)
	}
	return nil
}

func latestReconciles(ctx context.Context, st *comparator.Store) (map[string]ReconcileRun, error) {
	rows, err := st.Pool().Query(ctx, st.SQL(`SELECT DISTINCT ON (target) target, started_at, finished_at, clean, differences, tables, detail
		FROM {s}.reconcile_runs ORDER BY target, finished_at DESC`))
	if err != nil {
		return nil, fmt.Errorf("gate: reconcile results: %w", err)
	}
	defer rows.Close()
	out := map[string]ReconcileRun{}
	for rows.Next() {
		var r ReconcileRun
		if err := rows.Scan(&r.Target, &r.StartedAt, &r.FinishedAt, &r.Clean, &r.Differences, &r.Tables, &r.Detail); err != nil {
			return nil, fmt.Errorf("gate: reconcile results: %w", err)
		}
		out[r.Target] = r
	}
	return out, rows.Err()
}
