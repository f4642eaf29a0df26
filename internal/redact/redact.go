package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/heal7/shadowcube/schemas"
)

// Redaction modes for query parameters, form fields and JSON body paths.
const (
	ModeRemove = "remove" // the parameter, field or value is deleted
	ModeHMAC   = "hmac"   // the value is replaced by HMACPrefix + hex(HMAC-SHA256(secret, value))
)

// HMACPrefix starts every HMAC'd value (and every user key).
const HMACPrefix = "hmac-sha256:"

// MinSecretLen is the shortest HMAC secret accepted: shorter keys make user
// keys and HMAC'd values guessable offline.
const MinSecretLen = 32

// DefaultAllowHeaders are the headers that may be published, in requests and
// answers, without configuration: content negotiation, caching, tracing and
// the truth label of the AI comparison. Everything else is dropped unless
// Config.AllowHeaders names it. A trailer is published as
// "Trailer-<name>" when <name> is allowed.
var DefaultAllowHeaders = []string{
	"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
	"Age", "Allow", "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
	"Content-Length", "Content-Location", "Content-Range", "Content-Type", "Date", "Etag", "Expires",
	"Idempotency-Key", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
	"Last-Modified", "Location", "Pragma", "Range", "Retry-After", "Traceparent", "Tracestate",
	"Trailer", "Transfer-Encoding", "User-Agent", "Vary", "X-Content-Type-Options", "X-Correlation-Id",
	"X-Request-Id", "X-Requested-With", "X-Truth-Label",
}

// DefaultParams are the query parameter and form field names (compared
// case-insensitively) redacted without configuration: common names of
// tokens, passwords and signatures.
var DefaultParams = []string{
	"access_token", "refresh_token", "id_token", "token", "auth", "auth_token", "authorization",
	"api_key", "apikey", "key", "secret", "client_secret", "password", "passwd", "pwd", "pass",
	"session", "sessionid", "session_id", "sid", "signature", "sig", "code", "otp", "csrf", "csrf_token",
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature", "jwt", "assertion",
}

// Config is the set of privacy rules.
type Config struct {
	// Secret keys the HMAC of ModeHMAC; required in that mode, at least
	// MinSecretLen bytes whenever set.
	Secret []byte
	// AllowHeaders are published in addition to DefaultAllowHeaders.
	AllowHeaders []string
	// StripHeaders are never published, even when allowed.
	StripHeaders []string
	// Paths are JSON paths in request and answer bodies to redact: "$.a.b",
	// "$.items[*].email", "$.*.token". Every value of a body holding several
	// JSON values (NDJSON, concatenated objects) is redacted.
	Paths []string
	// Params are query parameters and form fields to redact in addition to
	// DefaultParams; a name with a leading "-" ("-code") takes a default
	// name off the list instead.
	Params []string
	// Mode is ModeRemove (default) or ModeHMAC.
	Mode string
}

// Env is Config as read from the environment: the same SHADOWCUBE_* variables
// configure the tap, import and shadow. Embed it in a command's env struct.
type Env struct {
	UserKeySecret string   `envconfig:"USER_KEY_SECRET" desc:"HMAC-SHA256 secret (at least 32 bytes) turning user ids into user keys and keying hmac redaction"`
	AllowHeaders  []string `envconfig:"TAP_ALLOW_HEADERS" desc:"comma list of headers published besides the safe defaults (Accept*, Content-*, Cache-Control, ETag, Traceparent, User-Agent, X-Request-Id, X-Truth-Label, ...); every other header is dropped"`
	StripHeaders  []string `envconfig:"TAP_STRIP_HEADERS" desc:"comma list of headers never published, even when allowed"`
	RedactPaths   []string `envconfig:"TAP_REDACT_PATHS" desc:"comma list of JSON body paths to redact, e.g. $.email,$.cards[*].number (every value of an NDJSON or multi-value body)"`
	RedactParams  []string `envconfig:"TAP_REDACT_PARAMS" desc:"comma list of query parameters and form fields to redact besides the defaults (access_token, token, api_key, key, password, signature, code, ...); -name takes a default off the list (e.g. -code)"`
	RedactMode    string   `envconfig:"TAP_REDACT_MODE" default:"remove" desc:"remove, or hmac (value replaced by hmac-sha256:<hex>)"`
}

// Config returns the rules e names.
func (e Env) Config() Config {
	c := Config{AllowHeaders: e.AllowHeaders, StripHeaders: e.StripHeaders, Paths: e.RedactPaths, Params: e.RedactParams, Mode: e.RedactMode}
	if e.UserKeySecret != "" {
		c.Secret = []byte(e.UserKeySecret)
	}
	return c
}

// Rules are validated privacy rules. A nil *Rules applies the defaults
// (allowlist, default parameters, no JSON paths, remove mode). Safe for
// concurrent use.
type Rules struct {
	secret []byte
	allow  map[string]bool // canonical header names
	strip  map[string]bool
	params map[string]bool // lower case
	paths  [][]string
	hmac   bool
}

var defaults, _ = New(Config{})

// ErrSecretTooShort is returned for an HMAC secret under MinSecretLen bytes:
// generate one with `openssl rand -hex 32`.
var ErrSecretTooShort = fmt.Errorf("secret is shorter than %d bytes: generate one with `openssl rand -hex 32`", MinSecretLen)

// New validates c.
func New(c Config) (*Rules, error) {
	var errs []error
	r := &Rules{secret: bytes.Clone(c.Secret), allow: map[string]bool{}, strip: map[string]bool{}, params: map[string]bool{}}
	if len(c.Secret) > 0 && len(c.Secret) < MinSecretLen {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_USER_KEY_SECRET (%d bytes): %w", len(c.Secret), ErrSecretTooShort))
	}
	for _, h := range DefaultAllowHeaders {
		r.allow[http.CanonicalHeaderKey(h)] = true
	}
	for _, h := range c.AllowHeaders {
		if h = strings.TrimSpace(h); h != "" {
			r.allow[http.CanonicalHeaderKey(h)] = true
		}
	}
	for _, h := range c.StripHeaders {
		if h = strings.TrimSpace(h); h != "" {
			r.strip[http.CanonicalHeaderKey(h)] = true
		}
	}
	for _, p := range DefaultParams {
		r.params[p] = true
	}
	for _, p := range c.Params {
		p = strings.ToLower(strings.TrimSpace(p))
		if name, ok := strings.CutPrefix(p, "-"); ok {
			delete(r.params, name)
		} else if p != "" {
			r.params[p] = true
		}
	}
	switch c.Mode {
	case "", ModeRemove:
	case ModeHMAC:
		r.hmac = true
		if len(c.Secret) == 0 {
			errs = append(errs, errors.New("redact mode hmac needs a secret (set SHADOWCUBE_USER_KEY_SECRET)"))
		}
	default:
		errs = append(errs, fmt.Errorf("redact mode %q: want %s or %s", c.Mode, ModeRemove, ModeHMAC))
	}
	for _, path := range c.Paths {
		if strings.TrimSpace(path) == "" {
			continue
		}
		segs, err := ParsePath(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("redact path %q: %w", path, err))
			continue
		}
		r.paths = append(r.paths, segs)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rules) orDefault() *Rules {
	if r == nil {
		return defaults
	}
	return r
}

// Allowed reports whether the header (any case) may be published.
func (r *Rules) Allowed(name string) bool {
	r = r.orDefault()
	ck := name
	if !r.allow[ck] && !r.strip[ck] {
		ck = http.CanonicalHeaderKey(name)
	}
	if r.strip[ck] {
		return false
	}
	if r.allow[ck] {
		return true
	}
	if rest, ok := strings.CutPrefix(ck, "Trailer-"); ok && rest != "" {
		return r.Allowed(rest)
	}
	return false
}

// Headers returns the allowed part of h (a new map sharing the value slices,
// which are never written), with the query of Location redacted; nil when
// empty.
func (r *Rules) Headers(h http.Header) http.Header {
	if len(h) == 0 {
		return nil
	}
	r = r.orDefault()
	out := make(http.Header, len(h))
	for k, v := range h {
		if !r.Allowed(k) {
			continue
		}
		out[k] = r.headerValues(k, v)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// HeadersInPlace removes from h, which the caller owns, what Headers would
// not keep; nil when nothing is left.
func (r *Rules) HeadersInPlace(h http.Header) http.Header {
	r = r.orDefault()
	for k, v := range h {
		if !r.Allowed(k) {
			delete(h, k)
			continue
		}
		if nv := r.headerValues(k, v); len(nv) > 0 && &nv[0] != &v[0] {
			h[k] = nv
		}
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

// headerValues redacts URLs in Location-like headers; other values are
// returned as they are.
func (r *Rules) headerValues(k string, v []string) []string {
	if len(k) != len("Location") && len(k) != len("Content-Location") {
		return v
	}
	if ck := http.CanonicalHeaderKey(k); ck != "Location" && ck != "Content-Location" {
		return v
	}
	var out []string
	for i, s := range v {
		base, q, ok := strings.Cut(s, "?")
		if !ok {
			continue
		}
		frag := ""
		if j := strings.IndexByte(q, '#'); j >= 0 {
			q, frag = q[:j], q[j:]
		}
		nq := r.Query(q)
		if nq == q {
			continue
		}
		if out == nil {
			out = append([]string(nil), v...)
		}
		out[i] = base
		if nq != "" {
			out[i] += "?" + nq
		}
		out[i] += frag
	}
	if out == nil {
		return v
	}
	return out
}

// Query redacts the configured and default parameters of a raw query string
// (or a form-encoded body). Other parameters keep their bytes and order. It
// returns raw itself when nothing matched.
func (r *Rules) Query(raw string) string {
	if raw == "" {
		return raw
	}
	r = r.orDefault()
	match := false
	for part := range strings.SplitSeq(raw, "&") {
		if name, _, _ := strings.Cut(part, "="); r.param(name) {
			match = true
			break
		}
	}
	if !match {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	n := 0
	for part := range strings.SplitSeq(raw, "&") {
		if name, value, _ := strings.Cut(part, "="); r.param(name) {
			if !r.hmac {
				continue
			}
			part = name + "=" + r.macString(value)
		}
		if n > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
		n++
	}
	return b.String()
}

func (r *Rules) param(name string) bool {
	if name == "" {
		return false
	}
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	return r.params[strings.ToLower(strings.TrimSpace(name))]
}

// MAC returns HMAC-SHA256(secret, data).
func (r *Rules) MAC(data []byte) [32]byte {
	m := hmac.New(sha256.New, r.orDefault().secret)
	m.Write(data)
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func (r *Rules) macString(v string) string {
	m := r.MAC([]byte(v))
	return HMACPrefix + hex.EncodeToString(m[:])
}

// Body redacts a request or answer body: form fields of a form-encoded body,
// configured JSON paths in every JSON value of a JSON body. It returns the
// body to publish and whether it was dropped (nil) because it could not be
// redacted safely: a truncated or malformed JSON body while JSON paths are
// configured. Callers count drops.
func (r *Rules) Body(b []byte, truncated bool, contentType string) ([]byte, bool) {
	if len(b) == 0 {
		return b, false
	}
	r = r.orDefault()
	if isForm(contentType) {
		s := r.Query(string(b))
		if s == string(b) {
			return b, false
		}
		return []byte(s), false
	}
	if len(r.paths) == 0 || !looksJSON(b, contentType) {
		return b, false
	}
	if truncated {
		return nil, true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var docs []any
	changed := false
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, true
		}
		for _, path := range r.paths {
			var c bool
			doc, c = r.redact(doc, path)
			changed = changed || c
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		return nil, true // only whitespace, yet it looked like JSON
	}
	if !changed {
		return b, false
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return nil, true
		}
	}
	if len(docs) == 1 {
		return bytes.TrimSuffix(out.Bytes(), []byte("\n")), false
	}
	return out.Bytes(), false
}

// Response sanitises an answer in place: headers (allowlist) and body. A
// body that cannot be redacted is removed and marked truncated; the result
// says so, for the caller's count.
func (r *Rules) Response(resp *schemas.HTTPResponse) (dropped bool) {
	if resp == nil {
		return false
	}
	r = r.orDefault()
	resp.Headers = r.Headers(resp.Headers)
	resp.Body, dropped = r.Body(resp.Body, resp.BodyTruncated, resp.Headers.Get("Content-Type"))
	if dropped {
		resp.BodyTruncated = true
	}
	return dropped
}

func isForm(contentType string) bool {
	if contentType == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

func looksJSON(b []byte, contentType string) bool {
	if strings.Contains(strings.ToLower(contentType), "json") {
		return true
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// redact applies one path to v; it returns the new value and whether
// anything changed.
func (r *Rules) redact(v any, path []string) (any, bool) {
	if len(path) == 0 {
		return v, false
	}
	seg, rest := path[0], path[1:]
	switch x := v.(type) {
	case map[string]any:
		changed := false
		for k, child := range x {
			if seg != "*" && seg != k {
				continue
			}
			if len(rest) == 0 {
				if r.hmac {
					raw, _ := json.Marshal(child)
					x[k] = r.macString(string(raw))
				} else {
					delete(x, k)
				}
				changed = true
				continue
			}
			nv, c := r.redact(child, rest)
			x[k] = nv
			changed = changed || c
		}
		return x, changed
	case []any:
		if seg != "*" {
			return v, false
		}
		changed := false
		out := x[:0]
		for _, child := range x {
			if len(rest) == 0 {
				changed = true
				if r.hmac {
					raw, _ := json.Marshal(child)
					out = append(out, r.macString(string(raw)))
				}
				continue
			}
			nv, c := r.redact(child, rest)
			out = append(out, nv)
			changed = changed || c
		}
		return out, changed
	}
	return v, false
}

// ParsePath parses "$.a.b[*].c" into ["a","b","*","c"].
func ParsePath(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "$")
	if !ok {
		return nil, errors.New(`want a path starting with "$", e.g. $.user.email`)
	}
	rest = strings.ReplaceAll(rest, "[*]", ".*")
	rest = strings.TrimPrefix(rest, ".")
	if rest == "" {
		return nil, errors.New("path names no field")
	}
	segs := strings.Split(rest, ".")
	for _, seg := range segs {
		if seg == "" || strings.ContainsAny(seg, "[]") {
			return nil, fmt.Errorf("bad segment %q: use $.a.b, $.a[*].b or $.*.b", seg)
		}
	}
	return segs, nil
}

// URL returns u for logs: password masked (url.URL.Redacted), query and
// fragment left out.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.Redacted()
}

// URLString is URL for a URL in text form; text that is no URL is cut at
// its first '?'.
func URLString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		base, _, _ := strings.Cut(s, "?")
		if i := strings.Index(base, "@"); i >= 0 {
			if j := strings.Index(base, "://"); j >= 0 && j < i {
				return base[:j+3] + "REDACTED@" + base[i+1:]
			}
		}
		return base
	}
	return URL(u)
}

// Err returns err with the URL of a *url.Error (what net/http's client
// returns) written as URLString, so logging it leaks no token or password.
// The result unwraps to the url.Error's cause.
func Err(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &cleanErr{msg: strings.ReplaceAll(err.Error(), ue.URL, URLString(ue.URL)), cause: ue.Err}
}

type cleanErr struct {
	msg   string
	cause error
}

func (e *cleanErr) Error() string { return e.msg }
func (e *cleanErr) Unwrap() error { return e.cause }

var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s"']+@`)

// Text masks the user-info part (user:password@) of every URL in s, for
// error texts that embed a URL (NATS and database connection errors).
func Text(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfo.ReplaceAllString(s, "${1}REDACTED@")
}

// Secrets is Err, then Text over the message.
func Secrets(err error) error {
	if err == nil {
		return nil
	}
	err = Err(err)
	msg := err.Error()
	if clean := Text(msg); clean != msg {
		return &cleanErr{msg: clean, cause: errors.Unwrap(err)}
	}
	return err
}
