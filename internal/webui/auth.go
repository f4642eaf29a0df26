package webui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Token is the UI token (SHADOWCUBE_UI_TOKEN): a secret. It prints, logs
// and marshals as "[redacted]" so it never reaches a log line.
type Token string

// String redacts the token.
func (t Token) String() string {
	if t == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the token in %#v.
func (t Token) GoString() string { return t.String() }

// LogValue redacts the token in slog.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// MarshalText redacts the token in JSON and YAML.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// sessionCookie names the login session cookie.
const sessionCookie = "shadowcube_session"

// sessionTTL bounds a login session.
const sessionTTL = 12 * time.Hour

// auth checks the UI token (bearer header or login session cookie) and
// mints and checks sessions and their CSRF tokens. Sessions are stateless:
// a cookie is a random id and an expiry signed with a key made at start,
// so a restart logs everyone out.
type auth struct {
	tokenSum [32]byte // sha256 of the token: compared in constant time whatever the length
	enabled  bool
	key      [32]byte
	now      func() time.Time
}

func newAuth(token Token) (*auth, error) {
	a := &auth{enabled: token != "", now: time.Now}
	a.tokenSum = sha256.Sum256([]byte(token))
	if _, err := rand.Read(a.key[:]); err != nil {
		return nil, err
	}
	return a, nil
}

// tokenOK compares a presented token with the configured one in constant
// time (over fixed-length digests, so the length leaks nothing either).
func (a *auth) tokenOK(presented string) bool {
	if !a.enabled || presented == "" {
		return false
	}
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

func (a *auth) mac(purpose string, payload []byte) []byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// newSession returns a signed session cookie value.
func (a *auth) newSession() (string, error) {
	payload := make([]byte, 24)
	if _, err := rand.Read(payload[:16]); err != nil {
		return "", err
	}
	binary.BigEndian.PutUint64(payload[16:], uint64(a.now().Add(sessionTTL).Unix()))
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(a.mac("session", payload)), nil
}

// session checks a cookie value: the payload (the session's identity)
// when it is signed by this process and not expired.
func (a *auth) session(v string) ([]byte, bool) {
	p, s, ok := strings.Cut(v, ".")
	if !ok {
		return nil, false
	}
	payload, err := b64.DecodeString(p)
	if err != nil || len(payload) != 24 {
		return nil, false
	}
	sig, err := b64.DecodeString(s)
	if err != nil || !hmac.Equal(sig, a.mac("session", payload)) {
		return nil, false
	}
	if a.now().Unix() > int64(binary.BigEndian.Uint64(payload[16:])) {
		return nil, false
	}
	return payload, true
}

// csrfFor is the CSRF token of a session: forms carry it, and a POST
// authenticated by the cookie must echo it.
func (a *auth) csrfFor(session []byte) string {
	return b64.EncodeToString(a.mac("csrf", session))
}

// identity says how a request is authenticated.
type identity struct {
	ok      bool
	bearer  bool   // by the Authorization header: no cookie, so no CSRF token needed
	session []byte // by the session cookie
	csrf    string // the session's CSRF token
}

// identify authenticates a request by its bearer header or session cookie.
func (a *auth) identify(r *http.Request) identity {
	if !a.enabled {
		return identity{}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") && a.tokenOK(strings.TrimSpace(tok)) {
			return identity{ok: true, bearer: true}
		}
		return identity{}
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return identity{}
	}
	s, ok := a.session(c.Value)
	if !ok {
		return identity{}
	}
	return identity{ok: true, session: s, csrf: a.csrfFor(s)}
}

// csrfOK checks a state-changing request's CSRF token: a bearer request
// carries no ambient credential and needs none; a cookie request must
// send its session's token in the form field csrf.
func (id identity) csrfOK(r *http.Request) bool {
	if id.bearer {
		return true
	}
	got := r.PostFormValue("csrf")
	return id.csrf != "" && subtle.ConstantTimeCompare([]byte(got), []byte(id.csrf)) == 1
}

// setSession sets the session cookie: HttpOnly, SameSite=Strict, Secure
// when served over TLS.
func setSession(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}
