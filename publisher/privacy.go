package publisher

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"sync"

	"github.com/heal7/shadowcube/internal/redact"
)

// DefaultUserHeader is the request header holding the raw user id, set by
// a trusted proxy.
const DefaultUserHeader = "X-User-Id"

// UserKeyPrefix starts every user key.
const UserKeyPrefix = redact.HMACPrefix

// ShadowRequestHeader marks a replayed request (dry run on services that
// honour it). The tap removes it from client requests: a client must not
// switch a live service to dry run.
const ShadowRequestHeader = "X-Shadow-Request"

// Redaction modes for query parameters, form fields and JSON body paths.
const (
	RedactRemove = redact.ModeRemove // the field is deleted
	RedactHMAC   = redact.ModeHMAC   // the value is replaced by "hmac-sha256:<hex>"
)

// PrivacyConfig says how the user is identified and what must not leave the
// process.
type PrivacyConfig struct {
	// Secret keys the HMAC of user ids and redacted values. Required, at
	// least 32 bytes.
	Secret []byte
	// UserHeader holds the raw user id (default X-User-Id), set by a trusted
	// proxy. It is believed only from TrustedProxies; from other peers the
	// tap removes it before forwarding. It is never published.
	UserHeader string
	// TrustedProxies are the CIDRs of peers whose UserHeader is believed
	// (nil: DefaultTrustedProxies, loopback; "none" or empty: nobody).
	TrustedProxies []string
	// UserCookie, when set, is a cookie holding the user id (used when no
	// verified identity is found). A cookie is chosen by the client: its
	// users get a user key but are never rolled out to the cube.
	UserCookie string
	// JWT, when set up, takes the user id from a claim of the bearer JWT,
	// verified with the configured key.
	JWT JWTConfig
	// AllowHeaders are published besides redact.DefaultAllowHeaders; every
	// other header is dropped.
	AllowHeaders []string
	// StripHeaders are never published, even when allowed.
	StripHeaders []string
	// RedactPaths are JSON paths in request and response bodies to redact:
	// "$.a.b", "$.items[*].email", "$.*.token".
	RedactPaths []string
	// RedactParams are query parameters and form fields to redact besides
	// redact.DefaultParams.
	RedactParams []string
	// RedactMode is RedactRemove (default) or RedactHMAC.
	RedactMode string
}

// RedactConfig are the redaction settings of a PrivacyConfig.
type RedactConfig = redact.Config

// RedactConfig returns the redaction rules of c, for the stages that apply
// them to other answers (shadow).
func (c PrivacyConfig) RedactConfig() RedactConfig {
	strip := append([]string{cmp.Or(c.UserHeader, DefaultUserHeader)}, c.StripHeaders...)
	return redact.Config{Secret: c.Secret, AllowHeaders: c.AllowHeaders, StripHeaders: strip, Paths: c.RedactPaths, Params: c.RedactParams, Mode: c.RedactMode}
}

// privacy is a validated PrivacyConfig.
type privacy struct {
	secret     []byte
	userHeader string
	userCookie string
	trusted    trust
	jwt        *verifier
	rules      *redact.Rules
	macs       sync.Pool
}

func newPrivacy(c PrivacyConfig) (*privacy, error) {
	if len(c.Secret) == 0 {
		return nil, errors.New("privacy: user key secret is empty (set SHADOWCUBE_USER_KEY_SECRET to at least 32 random bytes, e.g. `openssl rand -hex 32`); without it user keys could be reversed by guessing ids")
	}
	var errs []error
	rules, err := redact.New(c.RedactConfig())
	if err != nil {
		errs = append(errs, err)
	}
	p := &privacy{
		secret:     bytes.Clone(c.Secret),
		userHeader: http.CanonicalHeaderKey(cmp.Or(c.UserHeader, DefaultUserHeader)),
		userCookie: c.UserCookie,
		rules:      rules,
	}
	if p.trusted, err = parseTrust(c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	if c.JWT.enabled() {
		if p.jwt, err = newVerifier(c.JWT); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("privacy: %w", err)
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
	key      string // UserKeyPrefix + hex(mac); "" when no user id
	mac      [32]byte
	hasKey   bool
	verified bool // from a trusted proxy's header or a verified JWT: may be rolled out
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

// headers returns the publishable part of h (allowlist); nil when empty.
func (p *privacy) headers(h http.Header) http.Header { return p.rules.Headers(h) }

// stripInPlace removes what may not be published from h, which the caller
// owns; nil when nothing is left.
func (p *privacy) stripInPlace(h http.Header) http.Header { return p.rules.HeadersInPlace(h) }
