package publisher

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"sync"
)

// DefaultUserHeader is the request header holding the raw user id.
const DefaultUserHeader = "X-User-Id"

// UserKeyPrefix starts every user key.
const UserKeyPrefix = "hmac-sha256:"

// Redaction modes for JSON body fields.
const (
	RedactRemove = "remove" // the field is deleted
	RedactHMAC   = "hmac"   // the value is replaced by "hmac-sha256:<hex>" of its JSON text
)

// alwaysStripped are removed from every captured request and response.
var alwaysStripped = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token"}

// PrivacyConfig says how the user is identified and what must not leave the
// process.
type PrivacyConfig struct {
	// Secret keys the HMAC of user ids and redacted values. Required.
	Secret []byte
	// UserHeader holds the raw user id (default X-User-Id); it is always
	// removed from captured headers.
	UserHeader string
	// UserCookie, when set, is a cookie holding the user id (used when the
	// header is absent).
	UserCookie string
	// UserJWTClaim, when set, is a claim of the bearer JWT in Authorization
	// holding the user id (used when header and cookie are absent). The token
	// is not verified: the legacy service does that; the tap only needs a
	// stable identity to hash.
	UserJWTClaim string
	// StripHeaders are removed in addition to Authorization,
	// Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key and X-Auth-Token.
	StripHeaders []string
	// RedactPaths are JSON paths in request and response bodies to redact:
	// "$.a.b", "$.items[*].email", "$.*.token".
	RedactPaths []string
	// RedactMode is RedactRemove (default) or RedactHMAC.
	RedactMode string
}

// privacy is a validated PrivacyConfig.
type privacy struct {
	secret     []byte
	userHeader string
	userCookie string
	jwtClaim   string
	strip      map[string]bool // canonical header names
	paths      [][]string
	hmacMode   bool
	macs       sync.Pool
}

func newPrivacy(c PrivacyConfig) (*privacy, error) {
	if len(c.Secret) == 0 {
		return nil, errors.New("privacy: user key secret is empty (set SHADOWCUBE_USER_KEY_SECRET); without it user keys could be reversed by guessing ids")
	}
	p := &privacy{
		secret:     bytes.Clone(c.Secret),
		userHeader: http.CanonicalHeaderKey(c.UserHeader),
		userCookie: c.UserCookie,
		jwtClaim:   c.UserJWTClaim,
		strip:      map[string]bool{},
	}
	if p.userHeader == "" {
		p.userHeader = DefaultUserHeader
	}
	for _, h := range alwaysStripped {
		p.strip[h] = true
	}
	p.strip[p.userHeader] = true
	for _, h := range c.StripHeaders {
		if h = strings.TrimSpace(h); h != "" {
			p.strip[http.CanonicalHeaderKey(h)] = true
		}
	}
	switch c.RedactMode {
	case "", RedactRemove:
	case RedactHMAC:
		p.hmacMode = true
	default:
		return nil, fmt.Errorf("privacy: redact mode %q: want %s or %s", c.RedactMode, RedactRemove, RedactHMAC)
	}
	for _, path := range c.RedactPaths {
		segs, err := parseJSONPath(path)
		if err != nil {
			return nil, fmt.Errorf("privacy: redact path %q: %w", path, err)
		}
		p.paths = append(p.paths, segs)
	}
	p.macs.New = func() any { return &macState{h: hmac.New(sha256.New, p.secret), buf: make([]byte, 0, 64)} }
	return p, nil
}

// mac returns HMAC-SHA256(secret, data).
func (p *privacy) mac(data string) [32]byte {
	m := p.macs.Get().(*macState)
	m.h.Reset()
	m.buf = append(m.buf[:0], data...) // the hash.Hash interface would make []byte(data) escape
	m.h.Write(m.buf)
	m.buf = m.h.Sum(m.buf[:0])
	var out [32]byte
	copy(out[:], m.buf)
	if cap(m.buf) <= 1<<10 {
		p.macs.Put(m)
	}
	return out
}

// macState is a pooled HMAC with scratch space, so that a MAC costs no
// allocation.
type macState struct {
	h   hash.Hash
	buf []byte
}

// identity is what the tap knows of the user behind a request.
type identity struct {
	key    string // UserKeyPrefix + hex(mac); "" when no user id
	mac    [32]byte
	hasKey bool
}

// rolloutBucket is the user's bucket 0..99 for percentage rollout.
func (id identity) rolloutBucket() int {
	return int(binary.BigEndian.Uint64(id.mac[0:8]) % 100)
}

// sampleBucket is the user's bucket 0..9999 for consistent sampling.
func (id identity) sampleBucket() int {
	return int(binary.BigEndian.Uint64(id.mac[8:16]) % 10000)
}

func (p *privacy) identify(userID string) identity {
	if userID == "" {
		return identity{}
	}
	m := p.mac(userID)
	var key [len(UserKeyPrefix) + 2*len(m)]byte
	copy(key[:], UserKeyPrefix)
	hex.Encode(key[len(UserKeyPrefix):], m[:])
	return identity{key: string(key[:]), mac: m, hasKey: true}
}

// UserKey returns the user key of a raw user id as the tap computes it.
func (p *privacy) UserKey(userID string) string { return p.identify(userID).key }

// userID finds the raw user id of a request: header, then cookie, then JWT claim.
func (p *privacy) userID(h http.Header) string {
	if v := h.Get(p.userHeader); v != "" {
		return v
	}
	if p.userCookie != "" {
		r := http.Request{Header: h}
		if c, err := r.Cookie(p.userCookie); err == nil && c.Value != "" {
			return c.Value
		}
	}
	if p.jwtClaim != "" {
		return jwtClaim(h.Get("Authorization"), p.jwtClaim)
	}
	return ""
}

// jwtClaim reads a string (or number) claim from an unverified bearer JWT.
func jwtClaim(authz, claim string) string {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(authz, "bearer ")
	}
	if !ok {
		return ""
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	raw, ok := claims[claim]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// headers returns a copy of the map h without the stripped headers; nil
// when empty.
func (p *privacy) headers(h http.Header) http.Header {
	if len(h) == 0 {
		return nil
	}
	out := make(http.Header, len(h))
	for k, v := range h {
		if p.strip[k] || p.strip[http.CanonicalHeaderKey(k)] {
			continue
		}
		// The value slices are shared, not copied: header values are
		// replaced or appended to, never written in place, by net/http and
		// by the proxy, and the event only reads them.
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// stripInPlace removes the stripped headers from h, which the caller owns;
// nil when nothing is left.
func (p *privacy) stripInPlace(h http.Header) http.Header {
	for k := range h {
		if p.strip[k] || p.strip[http.CanonicalHeaderKey(k)] {
			delete(h, k)
		}
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

// body applies JSON redaction. It returns the body to publish and whether
// the body was dropped because it could not be redacted safely (truncated or
// malformed JSON while redaction is configured).
func (p *privacy) body(b []byte, truncated bool, contentType string) ([]byte, bool) {
	if len(p.paths) == 0 || len(b) == 0 {
		return b, false
	}
	if !looksJSON(b, contentType) {
		return b, false
	}
	if truncated {
		return nil, true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, true
	}
	changed := false
	for _, path := range p.paths {
		var c bool
		doc, c = p.redact(doc, path)
		changed = changed || c
	}
	if !changed {
		return b, false
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, true
	}
	return out, false
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
func (p *privacy) redact(v any, path []string) (any, bool) {
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
				if p.hmacMode {
					raw, _ := json.Marshal(child)
					m := p.mac(string(raw))
					x[k] = UserKeyPrefix + hex.EncodeToString(m[:])
				} else {
					delete(x, k)
				}
				changed = true
				continue
			}
			nv, c := p.redact(child, rest)
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
				if p.hmacMode {
					raw, _ := json.Marshal(child)
					m := p.mac(string(raw))
					out = append(out, UserKeyPrefix+hex.EncodeToString(m[:]))
				}
				continue
			}
			nv, c := p.redact(child, rest)
			out = append(out, nv)
			changed = changed || c
		}
		return out, changed
	}
	return v, false
}

// parseJSONPath parses "$.a.b[*].c" into ["a","b","*","c"].
func parseJSONPath(s string) ([]string, error) {
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
