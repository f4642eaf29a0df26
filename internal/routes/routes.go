package routes

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/theory/jsonpath"
	"gopkg.in/yaml.v3"

	"github.com/heal7/shadowcube/internal/fileerr"
)

// File is a parsed, validated routes file.
type File struct {
	Services []Service `yaml:"services"`
	name     string
}

// Service is one legacy service and the cube that replaces it.
type Service struct {
	Name          string            `yaml:"name"`
	CubeURL       string            `yaml:"cube_url"`
	SecondaryURL  string            `yaml:"secondary_url"`  // 2nd legacy instance for the noise baseline
	LegacyURL     string            `yaml:"legacy_url"`     // the legacy service, asked again on a mismatching read
	SyncTarget    string            `yaml:"sync_target"`    // mapping target feeding the cube's DB (freshness barrier)
	FreshnessWait Duration          `yaml:"freshness_wait"` // longest wait for the cube's watermark
	Timeout       Duration          `yaml:"timeout"`        // per replayed request
	Concurrency   int               `yaml:"concurrency"`    // replays in flight to the cube
	RatePerSecond float64           `yaml:"rate_per_second"`
	Headers       map[string]string `yaml:"headers"` // set on every replayed request ("" removes)
	Credentials   *Credentials      `yaml:"credentials"`
	Routes        []Route           `yaml:"routes"`
	Line          int               `yaml:"-"`
}

// Credentials are the service credentials a replayer presents to the cube.
type Credentials struct {
	Kind      string   `yaml:"kind"`       // bearer | jwt-hs256
	TokenEnv  string   `yaml:"token_env"`  // bearer: env var holding the token
	SecretEnv string   `yaml:"secret_env"` // jwt-hs256: env var holding the HMAC secret
	Issuer    string   `yaml:"issuer"`
	Audience  string   `yaml:"audience"`
	Subject   string   `yaml:"subject"`
	TTL       Duration `yaml:"ttl"`
}

// Route is one route template of a service.
type Route struct {
	Route   string   `yaml:"route"`   // template, e.g. /api/saju/chart/{id}
	Methods []string `yaml:"methods"` // empty = every method
	// Replay is the replay policy: reads (default), always, dry-run, never,
	// or idempotent-only (the older name of reads). See docs/routes.md.
	Replay string `yaml:"replay"`
	// Classifier tells reads from writes by content (nil: by method).
	Classifier *Classifier `yaml:"classify"`
	// Operation is the operation key: graphql, graphql-hash or a JSONPath
	// into the body ("" = none). See OperationKey.
	Operation string  `yaml:"operation"`
	Sample    float64 `yaml:"sample"`  // share of requests captured/replayed, 0..1 (default 1)
	Capture   *bool   `yaml:"capture"` // false = the tap does not capture this route (default true)
	Compare   Compare `yaml:"compare"`
	Line      int     `yaml:"-"`
	segs      []string
	opPath    *jsonpath.Path
}

// Compare says how answers of a route are compared.
type Compare struct {
	Kind        string             `yaml:"kind"`      // json (default) | saju | ai
	Ignore      []string           `yaml:"ignore"`    // JSON paths never compared, e.g. $.request_id
	Tolerance   map[string]float64 `yaml:"tolerance"` // JSON path → absolute numeric tolerance
	Unordered   []string           `yaml:"unordered"` // JSON paths of arrays compared as multisets
	Headers     []string           `yaml:"headers"`   // response headers compared (default none)
	Presence    []string           `yaml:"presence"`  // JSON paths compared by presence only (e.g. generated text)
	Normalize   []string           `yaml:"normalize"` // string normalisation: trim, collapse-space, fold-case
	Label       string             `yaml:"label"`     // ai: JSON path of the label
	Score       string             `yaml:"score"`     // ai: JSON path of the confidence
	TruthHeader string             `yaml:"truth_header"`
}

// String normalisations of Compare.Normalize.
const (
	NormTrim          = "trim"
	NormCollapseSpace = "collapse-space"
	NormFoldCase      = "fold-case"
)

// Replay policies. The default (replay: omitted) is ReplayReads: a write
// is never replayed unless the route says so.
const (
	// ReplayReads replays reads only: requests with a safe method (GET,
	// HEAD, OPTIONS) or that the route's classifier finds side-effect free.
	ReplayReads = "reads"
	// ReplayIdempotentOnly is the older name of ReplayReads. A client's
	// Idempotency-Key header does not make a request a read.
	ReplayIdempotentOnly = "idempotent-only"
	// ReplayAlways replays every request, writes included: only for cubes
	// whose writes are harmless (a throwaway database).
	ReplayAlways = "always"
	// ReplayDryRun replays every request with X-Shadow-Request: 1; the cube
	// promises to run it without side effects.
	ReplayDryRun = "dry-run"
	// ReplayNever captures the route but never replays it.
	ReplayNever = "never"
)

// ReplaysWrites reports whether the route's policy sends writes to the cube
// (always, dry-run).
func (r *Route) ReplaysWrites() bool {
	return r.Replay == ReplayAlways || r.Replay == ReplayDryRun
}

// Duration is a time.Duration written as "2s", "150ms" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration like 2s or 150ms", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is a problem in a routes file, with its place: the error type of
// every shadowcube file (internal/fileerr).
type Error = fileerr.Error

// Load reads and validates a routes file.
func Load(path string) (*File, error) {
	return fileerr.Read(path, "routes file", Parse)
}

// Parse parses and validates routes file content; name is used in errors.
func Parse(name string, data []byte) (*File, error) {
	root, err := fileerr.Document(name, data, "a services: list")
	if err != nil {
		return nil, err
	}
	v := validator{file: name}
	f := &File{name: name}
	v.keys(root, "", "services")
	svcs := v.child(root, "services")
	if svcs == nil {
		v.add(root.Line, "services", "missing; want a list of services")
		return nil, v.err()
	}
	if svcs.Kind != yaml.SequenceNode {
		v.add(svcs.Line, "services", "want a list")
		return nil, v.err()
	}
	names := map[string]int{}
	for i, sn := range svcs.Content {
		path := fmt.Sprintf("services[%d]", i)
		var s Service
		v.keys(sn, path, "name", "cube_url", "secondary_url", "legacy_url", "sync_target", "freshness_wait", "timeout", "concurrency", "rate_per_second", "headers", "credentials", "routes")
		if err := sn.Decode(&s); err != nil {
			v.add(sn.Line, path, cleanYAMLErr(err))
			continue
		}
		s.Line = sn.Line
		if s.Name == "" {
			v.add(sn.Line, path+".name", "required")
		} else if prev, dup := names[s.Name]; dup {
			v.add(sn.Line, path+".name", fmt.Sprintf("service %q already defined at line %d", s.Name, prev))
		} else {
			names[s.Name] = sn.Line
		}
		v.url(sn, path, "cube_url", s.CubeURL)
		v.url(sn, path, "secondary_url", s.SecondaryURL)
		v.url(sn, path, "legacy_url", s.LegacyURL)
		if s.Concurrency < 0 {
			v.add(lineOf(sn, "concurrency"), path+".concurrency", "must be ≥ 0")
		}
		if s.RatePerSecond < 0 {
			v.add(lineOf(sn, "rate_per_second"), path+".rate_per_second", "must be ≥ 0")
		}
		if c := s.Credentials; c != nil {
			cn := v.child(sn, "credentials")
			v.keys(cn, path+".credentials", "kind", "token_env", "secret_env", "issuer", "audience", "subject", "ttl")
			switch c.Kind {
			case "bearer":
				if c.TokenEnv == "" {
					v.add(cn.Line, path+".credentials.token_env", "required for kind bearer")
				}
			case "jwt-hs256":
				if c.SecretEnv == "" {
					v.add(cn.Line, path+".credentials.secret_env", "required for kind jwt-hs256")
				}
			default:
				v.add(cn.Line, path+".credentials.kind", fmt.Sprintf("%q is not one of bearer, jwt-hs256", c.Kind))
			}
		}
		rn := v.child(sn, "routes")
		for j := range s.Routes {
			v.route(rn.Content[j], fmt.Sprintf("%s.routes[%d]", path, j), &s.Routes[j])
		}
		f.Services = append(f.Services, s)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return f, nil
}

type validator struct {
	file string
	errs []error
}

func (v *validator) add(line int, field, msg string) {
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Field: field, Msg: msg})
}

func (v *validator) err() error { return errors.Join(v.errs...) }

// keys reports keys of mapping n that are not in allowed (typos).
func (v *validator) keys(n *yaml.Node, path string, allowed ...string) {
	if n == nil || n.Kind != yaml.MappingNode {
		if n != nil {
			v.add(n.Line, strings.TrimPrefix(path, "."), "want a mapping")
		}
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			field := k.Value
			if path != "" {
				field = path + "." + k.Value
			}
			v.add(k.Line, field, "unknown field; known: "+strings.Join(allowed, ", "))
		}
	}
}

func (v *validator) child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func lineOf(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func (v *validator) url(n *yaml.Node, path, key, value string) {
	if value == "" {
		return
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(lineOf(n, key), path+"."+key, fmt.Sprintf("%q is not an http(s) URL like http://saju-cube:8001", value))
	}
}

func (v *validator) route(n *yaml.Node, path string, r *Route) {
	r.Line = n.Line
	v.keys(n, path, "route", "methods", "replay", "classify", "operation", "sample", "capture", "compare")
	if !strings.HasPrefix(r.Route, "/") {
		v.add(lineOf(n, "route"), path+".route", fmt.Sprintf("%q must be an absolute path template like /api/saju/chart/{id}", r.Route))
	}
	r.segs = strings.Split(strings.TrimPrefix(r.Route, "/"), "/")
	for _, s := range r.segs {
		if strings.HasPrefix(s, "{") != strings.HasSuffix(s, "}") || (strings.HasPrefix(s, "{") && len(s) < 3) {
			v.add(lineOf(n, "route"), path+".route", fmt.Sprintf("segment %q: a parameter is written {name}", s))
		}
	}
	for i, m := range r.Methods {
		if m != strings.ToUpper(m) || m == "" {
			v.add(lineOf(n, "methods"), fmt.Sprintf("%s.methods[%d]", path, i), fmt.Sprintf("%q: write HTTP methods in upper case", m))
		}
	}
	switch r.Replay {
	case "":
		r.Replay = ReplayReads
	case ReplayReads, ReplayIdempotentOnly, ReplayAlways, ReplayDryRun, ReplayNever:
	default:
		v.add(lineOf(n, "replay"), path+".replay", fmt.Sprintf("%q is not one of reads, always, dry-run, never, idempotent-only", r.Replay))
	}
	if c := r.Classifier; c != nil {
		cn := v.child(n, "classify")
		v.keys(cn, path+".classify", "graphql", "read_when", "write_when")
		if c.GraphQL && (c.ReadWhen != nil || c.WriteWhen != nil) {
			v.add(cn.Line, path+".classify", "graphql and read_when/write_when exclude each other")
		}
		for _, bc := range []struct {
			key string
			c   *BodyCondition
		}{{"read_when", c.ReadWhen}, {"write_when", c.WriteWhen}} {
			if bc.c == nil {
				continue
			}
			v.keys(v.child(cn, bc.key), path+".classify."+bc.key, "path", "match")
			if err := bc.c.compile(); err != nil {
				v.add(lineOf(cn, bc.key), path+".classify."+bc.key, err.Error())
			}
		}
	}
	switch r.Operation {
	case "", OperationGraphQL, OperationGraphQLHash:
	default:
		p, err := jsonpath.Parse(r.Operation)
		if err != nil || !strings.HasPrefix(r.Operation, "$") {
			v.add(lineOf(n, "operation"), path+".operation", fmt.Sprintf("%q is not graphql, graphql-hash or a JSONPath like $.method", r.Operation))
		}
		r.opPath = p
	}
	if v.child(n, "sample") == nil {
		r.Sample = 1
	} else if r.Sample < 0 || r.Sample > 1 {
		v.add(lineOf(n, "sample"), path+".sample", fmt.Sprintf("%v is outside 0..1", r.Sample))
	}
	cn := v.child(n, "compare")
	if cn == nil {
		r.Compare.Kind = "json"
		return
	}
	v.keys(cn, path+".compare", "kind", "ignore", "tolerance", "unordered", "headers", "presence", "normalize", "label", "score", "truth_header")
	c := &r.Compare
	switch c.Kind {
	case "":
		c.Kind = "json"
	case "json", "saju":
	case "ai":
		if c.Label == "" {
			v.add(cn.Line, path+".compare.label", "required for kind ai (JSON path of the label, e.g. $.label)")
		}
		if c.TruthHeader == "" {
			c.TruthHeader = "X-Truth-Label"
		}
	default:
		v.add(lineOf(cn, "kind"), path+".compare.kind", fmt.Sprintf("%q is not one of json, saju, ai", c.Kind))
	}
	check := func(field, p string) {
		if !strings.HasPrefix(p, "$") {
			v.add(lineOf(cn, field), path+".compare."+field, fmt.Sprintf("%q: JSON paths start with $, e.g. $.request_id", p))
		}
	}
	for _, p := range c.Ignore {
		check("ignore", p)
	}
	for _, p := range c.Unordered {
		check("unordered", p)
	}
	for _, p := range c.Presence {
		check("presence", p)
	}
	for _, n := range c.Normalize {
		if !slices.Contains([]string{NormTrim, NormCollapseSpace, NormFoldCase}, n) {
			v.add(lineOf(cn, "normalize"), path+".compare.normalize", fmt.Sprintf("%q is not one of trim, collapse-space, fold-case", n))
		}
	}
	for p, tol := range c.Tolerance {
		check("tolerance", p)
		if tol < 0 {
			v.add(lineOf(cn, "tolerance"), path+".compare.tolerance", fmt.Sprintf("%s: %v must be ≥ 0", p, tol))
		}
	}
	for _, p := range []struct{ f, v string }{{"label", c.Label}, {"score", c.Score}} {
		if p.v != "" {
			check(p.f, p.v)
		}
	}
}

func cleanYAMLErr(err error) string {
	return strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n ", ""), "yaml: ")
}

// Service returns the service of that name.
func (f *File) Service(name string) (*Service, bool) {
	for i := range f.Services {
		if f.Services[i].Name == name {
			return &f.Services[i], true
		}
	}
	return nil, false
}

// Match returns the route whose template matches the request path and
// method. Literal segments beat parameters: /a/new wins over /a/{id}.
func (s *Service) Match(method, path string) (*Route, bool) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var best *Route
	bestLit := -1
	for i := range s.Routes {
		r := &s.Routes[i]
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
			continue
		}
		if lit, ok := r.match(segs); ok && lit > bestLit {
			best, bestLit = r, lit
		}
	}
	return best, best != nil
}

func (r *Route) match(segs []string) (literals int, ok bool) {
	tmpl := r.segs
	if tmpl == nil { // a Route built by hand rather than by Parse
		tmpl = strings.Split(strings.TrimPrefix(r.Route, "/"), "/")
	}
	if len(segs) != len(tmpl) {
		return 0, false
	}
	for i, t := range tmpl {
		if strings.HasPrefix(t, "{") {
			if segs[i] == "" {
				return 0, false
			}
			continue
		}
		if t != segs[i] {
			return 0, false
		}
		literals++
	}
	return literals, true
}

// Captured reports whether the tap captures this route.
func (r *Route) Captured() bool { return r.Capture == nil || *r.Capture }
