package comparator

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode"
)

// Kinds of comparison a route can ask for.
const (
	KindJSON = "json" // generic rule engine (default)
	KindSaju = "saju" // rule engine + saju normalisation + cause tags
	KindAI   = "ai"   // rule engine + label agreement / accuracy statistics
)

// DefaultTruthHeader is the request header that carries the truth label of an
// AI request when Rules.TruthHeader is empty.
const DefaultTruthHeader = "X-Truth-Label"

// StringNorm says how strings are normalised before they are compared.
// The zero value compares strings byte for byte.
type StringNorm struct {
	Trim          bool // strip leading and trailing white space
	CollapseSpace bool // runs of white space compare as one space
	FoldCase      bool // compare case-insensitively (Unicode simple folding)
}

// Rules is how the answers of one route are compared. Paths are JSONPath-like
// patterns (see ParsePattern); a rule on a path covers everything below it.
type Rules struct {
	Kind      string             // json (default) | saju | ai
	Ignore    []string           // paths never compared, e.g. $.request_id
	Tolerance map[string]float64 // path → absolute tolerance for numbers
	Unordered []string           // paths of arrays compared as multisets
	Presence  []string           // paths compared by presence only (non-null, non-empty)
	Headers   []string           // response headers compared (default none)
	Normalize StringNorm         // string normalisation for every string

	Label       string // ai: path of the label (default $.label)
	Score       string // ai: path of the confidence (default $.confidence)
	TruthHeader string // ai: request header with the truth label (default X-Truth-Label)
}

// engine is compiled Rules.
type engine struct {
	kind      string
	ignore    patternSet
	unordered patternSet
	presence  patternSet
	tol       []tolRule
	headers   []string // canonical header names
	norm      StringNorm
	normOn    bool
	label     []step
	score     []step
	truth     string
}

type tolRule struct {
	p   Pattern
	tol float64
}

// compile validates rules; errors name the field and the bad value.
func compile(r Rules) (*engine, error) {
	e := &engine{kind: r.Kind, norm: r.Normalize}
	if e.kind == "" {
		e.kind = KindJSON
	}
	switch e.kind {
	case KindJSON, KindSaju, KindAI:
	default:
		return nil, fmt.Errorf("kind %q: want json, saju or ai", r.Kind)
	}
	e.normOn = r.Normalize != (StringNorm{})
	var errs []error
	var err error
	ignore := r.Ignore
	presence := r.Presence
	if e.kind == KindSaju {
		// The saju contract: ids and timestamps differ per request, the
		// narrative is interpretive and never compared as text.
		ignore = append(append([]string(nil), ignore...), "$.id", "$.request_id", "$.generated_at")
		presence = append(append([]string(nil), presence...), "$.interpretation")
	}
	if e.kind == KindAI {
		// The confidence is judged statistically (mean difference), not per
		// pair; the explanation text by presence.
		score := r.Score
		if score == "" {
			score = "$.confidence"
		}
		presence = append(append([]string(nil), presence...), "$.text")
		ignore = append(append([]string(nil), ignore...), "$.request_id", score)
	}
	if e.ignore, err = parsePatterns("ignore", ignore); err != nil {
		errs = append(errs, err)
	}
	if e.unordered, err = parsePatterns("unordered", r.Unordered); err != nil {
		errs = append(errs, err)
	}
	if e.presence, err = parsePatterns("presence", presence); err != nil {
		errs = append(errs, err)
	}
	keys := make([]string, 0, len(r.Tolerance))
	for k := range r.Tolerance {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic "first pattern wins"
	for _, k := range keys {
		v := r.Tolerance[k]
		if v < 0 || v != v {
			errs = append(errs, fmt.Errorf("tolerance %q: %v must be a non-negative number", k, v))
			continue
		}
		p, err := ParsePattern(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("tolerance: %w", err))
			continue
		}
		e.tol = append(e.tol, tolRule{p, v})
	}
	for _, h := range r.Headers {
		if strings.TrimSpace(h) == "" {
			errs = append(errs, errors.New("headers: empty header name"))
			continue
		}
		e.headers = append(e.headers, http.CanonicalHeaderKey(strings.TrimSpace(h)))
	}
	if e.kind == KindAI {
		label, score := r.Label, r.Score
		if label == "" {
			label = "$.label"
		}
		if score == "" {
			score = "$.confidence"
		}
		if e.label, err = concretePath("label", label); err != nil {
			errs = append(errs, err)
		}
		if e.score, err = concretePath("score", score); err != nil {
			errs = append(errs, err)
		}
		e.truth = r.TruthHeader
		if e.truth == "" {
			e.truth = DefaultTruthHeader
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// concretePath turns a pattern without wildcards into steps.
func concretePath(field, src string) ([]step, error) {
	p, err := ParsePattern(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	out := make([]step, 0, len(p.segs))
	for _, s := range p.segs {
		switch s.kind {
		case segKey:
			out = append(out, step{key: s.key})
		case segIndex:
			out = append(out, step{index: s.index, isIdx: true})
		default:
			return nil, fmt.Errorf("%s: path %q: wildcards are not allowed here", field, src)
		}
	}
	return out, nil
}

// tolerance returns the tolerance of the first pattern matching the location.
func (e *engine) tolerance(steps []step) (float64, int) {
	for i := range e.tol {
		if e.tol[i].p.match(steps) {
			return e.tol[i].tol, i
		}
	}
	return 0, -1
}

// normalize applies the string normalisation.
func (e *engine) normalize(s string) string {
	if !e.normOn {
		return s
	}
	if e.norm.Trim {
		s = strings.TrimSpace(s)
	}
	if e.norm.CollapseSpace {
		s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	}
	if e.norm.FoldCase {
		s = strings.ToLower(s)
	}
	return s
}
