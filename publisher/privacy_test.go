package publisher

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// jwtKey signs the test tokens (HS256).
var jwtKey = []byte("jwt-test-key-0123456789abcdef0123")

func signJWT(tb testing.TB, claims jwt.MapClaims, key []byte) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// eventText is everything a published event discloses, bodies decoded
// (they travel base64-encoded, so scanning the raw message misses them).
func eventText(tb testing.TB, m jetstream.Msg) string {
	tb.Helper()
	ev, err := schemas.DecodeRequestEvent(m.Data())
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("%s\n%v\n%s\n%s\n%v\n%s\n%s", m.Data(), m.Headers(), ev.Path, ev.Query, ev.Headers, ev.Body, ev.Response.Body) +
		fmt.Sprint(ev.Response.Headers)
}

// TestPrivacyScan plants secrets and raw user ids in every place a request
// and an answer can carry them — credential and custom headers, cookies,
// query strings, form bodies, JSON bodies with several values (NDJSON and
// concatenated), Set-Cookie, a Location with a token, an NDJSON answer —
// sends them through the tap (legacy path and a rolled-out user's
// background legacy call) and the middleware, and scans every event of
// LEGACY_REQUESTS, decoded, and the component log for them. On the old code
// it found the query token, the form password, the second NDJSON value,
// X-Csrf-Token and X-Access-Token in the stream.
func TestPrivacyScan(t *testing.T) {
	upstream := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Set-Cookie", "sid=SECRET-SETCOOKIE")
		w.Header().Set("X-Session-Token", "SECRET-RESP-HEADER")
		w.Header().Set("Location", "/next?page=2&access_token=SECRET-LOCATION")
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, `{"owner":{"email":"RAW-EMAIL@example.com","name":"kim"},"score":1}`+"\n"+`{"token":"SECRET-RESP-NDJSON"}`+"\n")
	}
	up := httptest.NewServer(http.HandlerFunc(upstream))
	defer up.Close()
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "cube")
	}))
	defer cube.Close()
	logBuf := &testenv.Buffer{}
	log := slogText(logBuf)
	cfg := Config{Privacy: PrivacyConfig{
		UserCookie: "uid", JWT: JWTConfig{HS256Secret: jwtKey},
		StripHeaders: []string{"X-Internal-Token"},
		RedactPaths:  []string{"$.owner.email", "$.cards[*].number", "$.password", "$.token"},
	}}
	e := newEnvLog(t, cfg, log)
	tap, err := NewTap(e.c, TapConfig{Upstream: up.URL, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()
	// A rolled-out user's capture comes from a background legacy call.
	rolled, err := NewTap(e.c, TapConfig{Upstream: up.URL, Cube: cube.URL, Rollout: staticRollout(100), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer rolled.Close()
	rsrv := httptest.NewServer(rolled)
	defer rsrv.Close()
	mw := httptest.NewServer(Middleware(e.c)(http.HandlerFunc(upstream)))
	defer mw.Close()

	token := signJWT(t, jwt.MapClaims{"sub": "RAW-JWT-USER", "exp": time.Now().Add(time.Hour).Unix()}, jwtKey)
	type req struct {
		query, ctype, body string
		hdr                map[string]string
	}
	cards := `{"cards":[{"number":"RAW-CARD-1"},{"number":"RAW-CARD-2"}],"note":"ok"}`
	reqs := []req{
		{"", "application/json", cards, map[string]string{"X-User-Id": "RAW-HEADER-USER", "Authorization": "Basic SECRET-BASIC"}},
		{"", "application/json", cards, map[string]string{"Cookie": "uid=RAW-COOKIE-USER; other=SECRET-COOKIE"}},
		{"", "application/json", cards, map[string]string{"Authorization": "Bearer " + token}},
		{"", "application/json", cards, map[string]string{"X-Internal-Token": "SECRET-INTERNAL", "X-Api-Key": "SECRET-APIKEY",
			"X-Csrf-Token": "SECRET-CSRF", "X-Access-Token": "SECRET-ACCESS", "X-Shadow-Request": "1"}},
		{"page=2&access_token=SECRET-QUERY&API_KEY=SECRET-QUERY2", "application/json", `{"note":"ok"}`, nil},
		{"", "application/x-www-form-urlencoded", "user=kim&password=SECRET-FORM&note=ok", nil},
		{"", "application/x-ndjson", `{"note":"ok"}` + "\n" + `{"password":"SECRET-NDJSON"}` + "\n", nil},
		{"", "", `{"note":"ok"}{"token":"SECRET-CONCAT"}`, nil},
	}
	sent := 0
	for _, base := range []string{srv.URL, mw.URL, rsrv.URL} {
		for i, r := range reqs {
			u := base + "/pay"
			if r.query != "" {
				u += "?" + r.query
			}
			hr, _ := http.NewRequest("POST", u, strings.NewReader(r.body))
			if r.ctype != "" {
				hr.Header.Set("Content-Type", r.ctype)
			}
			for k, v := range r.hdr {
				hr.Header.Set(k, v)
			}
			if base == rsrv.URL {
				hr.Header.Set("Authorization", "Bearer "+token) // verified: rolled out
				if i == 0 {
					hr.Header.Set("Authorization", "Basic SECRET-BASIC")
				}
			}
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			sent++
		}
	}
	var msgs []jetstream.Msg
	waitFor(t, 30*time.Second, func() bool {
		e.flush(t)
		msgs = messages(t, e.js)
		return len(msgs) >= sent
	}, func() string { return fmt.Sprintf("%d events of %d requests", len(msgs), sent) })
	forbidden := []string{"RAW-HEADER-USER", "RAW-COOKIE-USER", "RAW-JWT-USER", token, "SECRET-", "RAW-EMAIL", "RAW-CARD"}
	keys := map[string]bool{}
	notes := 0
	for _, m := range msgs {
		text := eventText(t, m)
		for _, f := range forbidden {
			if strings.Contains(text, f) {
				t.Errorf("event on %s discloses %q:\n%s", m.Subject(), f, text)
			}
		}
		ev, _ := schemas.DecodeRequestEvent(m.Data())
		if bytes.Contains(ev.Body, []byte(`"note":"ok"`)) || bytes.Contains(ev.Body, []byte(`note=ok`)) {
			notes++
		}
		if ev.Headers.Get("X-Shadow-Request") != "" {
			t.Errorf("client's X-Shadow-Request published")
		}
		keys[ev.UserKey] = true
	}
	if notes < 3*(len(reqs)-1) {
		t.Errorf("redaction lost the rest of the bodies: %d of %d kept their note", notes, 3*(len(reqs)-1))
	}
	for _, id := range []string{"RAW-HEADER-USER", "RAW-COOKIE-USER", "RAW-JWT-USER"} {
		if !keys[e.c.UserKey(id)] {
			t.Errorf("no event carries the user key of %s", id)
		}
	}
	for _, f := range forbidden {
		if strings.Contains(logBuf.String(), f) {
			t.Errorf("log discloses %q:\n%s", f, logBuf.String())
		}
	}
}

// TestIdentityTrust: the user header counts only from a trusted proxy (and
// is removed upstream otherwise), a JWT only when its signature, exp, aud
// and iss check out (alg none, another key, expired: no identity), a cookie
// gives a user key but never a rollout. On the old code an untrusted
// X-User-Id and an alg-none token both chose the user's bucket.
func TestIdentityTrust(t *testing.T) {
	var upUser atomic.Value
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upUser.Store(r.Header.Get("X-User-Id") + "|" + r.Header.Get("X-Shadow-Request"))
		fmt.Fprint(w, "legacy")
	}))
	defer legacy.Close()
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "cube") }))
	defer cube.Close()
	var untrustedEnv *env
	newTap := func(trusted []string) string {
		e := newEnv(t, Config{Privacy: PrivacyConfig{TrustedProxies: trusted, UserCookie: "uid",
			JWT: JWTConfig{HS256Secret: jwtKey, Audience: "heal7", Issuer: "auth"}}})
		if untrustedEnv == nil {
			untrustedEnv = e
		}
		tap, err := NewTap(e.c, TapConfig{Upstream: legacy.URL, Cube: cube.URL, Rollout: staticRollout(100)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tap.Close() })
		srv := httptest.NewServer(tap)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	untrusted := newTap([]string{"10.0.0.0/8"})
	trusted := newTap(nil) // default: loopback
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "u1", "aud": "heal7", "iss": "auth", "exp": time.Now().Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, c := range []struct {
		name, base string
		hdr        map[string]string
		want       string // who answers
	}{
		{"untrusted header", untrusted, map[string]string{"X-User-Id": "u1", "X-Shadow-Request": "1"}, "legacy"},
		{"trusted header", trusted, map[string]string{"X-User-Id": "u1"}, "cube"},
		{"cookie", trusted, map[string]string{"Cookie": "uid=u1"}, "legacy"},
		{"alg none", untrusted, map[string]string{"Authorization": "Bearer " + none}, "legacy"},
		{"other key", untrusted, map[string]string{"Authorization": "Bearer " + signJWT(t, claims(nil), []byte("another-key-0123456789abcdef01234"))}, "legacy"},
		{"expired", untrusted, map[string]string{"Authorization": "Bearer " + signJWT(t, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), jwtKey)}, "legacy"},
		{"no exp", untrusted, map[string]string{"Authorization": "Bearer " + signJWT(t, claims(func(c jwt.MapClaims) { delete(c, "exp") }), jwtKey)}, "legacy"},
		{"wrong aud", untrusted, map[string]string{"Authorization": "Bearer " + signJWT(t, claims(func(c jwt.MapClaims) { c["aud"] = "other" }), jwtKey)}, "legacy"},
		{"wrong iss", untrusted, map[string]string{"Authorization": "Bearer " + signJWT(t, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }), jwtKey)}, "legacy"},
		{"valid jwt", untrusted, map[string]string{"Authorization": "Bearer " + signJWT(t, claims(nil), jwtKey)}, "cube"},
	} {
		t.Run(c.name, func(t *testing.T) {
			upUser.Store("")
			req, _ := http.NewRequest("GET", c.base+"/x", nil)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != c.want {
				t.Errorf("answered by %q, want %q", got, c.want)
			}
			if c.name == "untrusted header" && upUser.Load() != "|" {
				t.Errorf("legacy saw X-User-Id|X-Shadow-Request = %q from an untrusted client; want both removed", upUser.Load())
			}
		})
	}
	// The untrusted tap's captures carry no key for the header's "u1": only
	// the valid JWT's (the same sub) may. The untrusted-header request came
	// first, so its event is the earliest.
	untrustedEnv.flush(t)
	evs := events(t, untrustedEnv.js)
	if len(evs) == 0 || evs[0].UserKey != "" {
		t.Errorf("an untrusted X-User-Id was keyed: %d events, first user key %q", len(evs), firstKey(evs))
	}
	if _, err := newPrivacy(PrivacyConfig{Secret: []byte(testSecret), JWT: JWTConfig{Claim: "sub"}}); err == nil || !strings.Contains(err.Error(), "SHADOWCUBE_TAP_JWT_") {
		t.Errorf("a JWT claim without a key: %v", err)
	}
	if _, err := newPrivacy(PrivacyConfig{Secret: []byte("short")}); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Errorf("a 5-byte secret: %v", err)
	}
	if _, err := newPrivacy(PrivacyConfig{Secret: []byte(testSecret), TrustedProxies: []string{"10.0.0.0/33"}}); err == nil {
		t.Error("bad CIDR accepted")
	}
}

// TestTapLogsRedactURLs: a failed background legacy call for a rolled-out
// user, and a cube failure, are logged without the query string's token and
// without the upstream's basic-auth password. On the old code the log held
// `Get "http://ops:UPSTREAM-PW@…/x?access_token=SECRET-QUERY"`.
func TestTapLogsRedactURLs(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := strings.Replace(dead.URL, "http://", "http://ops:UPSTREAM-PW@", 1)
	dead.Close() // connection refused from now on
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "cube") }))
	defer cube.Close()
	logBuf := &testenv.Buffer{}
	e := newEnv(t, Config{})
	tap, err := NewTap(e.c, TapConfig{Upstream: deadURL, Cube: cube.URL, Rollout: staticRollout(100), Log: slogText(logBuf)})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/x?page=1&access_token=SECRET-QUERY", nil)
	req.Header.Set("X-User-Id", "u1") // loopback: a trusted proxy, so rolled out
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitFor(t, 30*time.Second, func() bool { return strings.Contains(logBuf.String(), "legacy call for a rolled-out user failed") },
		func() string { return "the failed legacy call was not logged:\n" + logBuf.String() })
	l := logBuf.String()
	if strings.Contains(l, "SECRET-QUERY") || strings.Contains(l, "UPSTREAM-PW") || !strings.Contains(l, "connection refused") {
		t.Errorf("log:\n%s", l)
	}
	if _, err := NewTap(e.c, TapConfig{Upstream: "ftp://ops:UPSTREAM-PW@legacy/"}); err == nil || strings.Contains(err.Error(), "UPSTREAM-PW") {
		t.Errorf("bad upstream URL error: %v", err)
	}
}

// TestJWTKeySources: RS256 and ES256 tokens verify against a PEM public key
// and against a JWKS (by kid); the classic key confusion — an HS256 token
// whose HMAC key is the RSA public key's PEM — is refused, and so is a token
// whose kid names no key.
func TestJWTKeySources(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"r1","use":"sig","n":%q,"e":%q},{"kty":"EC","kid":"e1","crv":"P-256","x":%q,"y":%q}]}`,
		b64(rsaKey.N.Bytes()), b64(big.NewInt(int64(rsaKey.E)).Bytes()), b64(ecKey.X.FillBytes(make([]byte, 32))), b64(ecKey.Y.FillBytes(make([]byte, 32))))
	claims := jwt.MapClaims{"sub": "u-42", "exp": time.Now().Add(time.Hour).Unix()}
	sign := func(m jwt.SigningMethod, kid string, key any) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + s
	}
	rsaPEM, ecPEM := pemOf(&rsaKey.PublicKey), pemOf(&ecKey.PublicKey)
	for _, c := range []struct {
		name  string
		cfg   JWTConfig
		authz string
		want  string
	}{
		{"RS256 PEM", JWTConfig{PublicKeyPEM: rsaPEM}, sign(jwt.SigningMethodRS256, "", rsaKey), "u-42"},
		{"ES256 PEM", JWTConfig{PublicKeyPEM: ecPEM}, sign(jwt.SigningMethodES256, "", ecKey), "u-42"},
		{"JWKS RSA", JWTConfig{JWKS: []byte(jwks)}, sign(jwt.SigningMethodRS256, "r1", rsaKey), "u-42"},
		{"JWKS EC", JWTConfig{JWKS: []byte(jwks)}, sign(jwt.SigningMethodES256, "e1", ecKey), "u-42"},
		{"JWKS unknown kid", JWTConfig{JWKS: []byte(jwks)}, sign(jwt.SigningMethodRS256, "nope", rsaKey), ""},
		{"JWKS kid of the other key", JWTConfig{JWKS: []byte(jwks)}, sign(jwt.SigningMethodRS256, "e1", rsaKey), ""},
		{"HS256 with the public key as secret", JWTConfig{PublicKeyPEM: rsaPEM}, sign(jwt.SigningMethodHS256, "", rsaPEM), ""},
		{"ES256 token, RSA key", JWTConfig{PublicKeyPEM: rsaPEM}, sign(jwt.SigningMethodES256, "", ecKey), ""},
	} {
		v, err := newVerifier(c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := v.userID(c.authz, time.Time{}); got != c.want {
			t.Errorf("%s: user %q, want %q", c.name, got, c.want)
		}
	}
	if _, err := newVerifier(JWTConfig{PublicKeyPEM: rsaPEM, HS256Secret: jwtKey}); err == nil {
		t.Error("two key sources accepted")
	}
	if _, err := newVerifier(JWTConfig{JWKS: []byte(`{"keys":[]}`)}); err == nil {
		t.Error("empty JWKS accepted")
	}
}

func firstKey(evs []schemas.RequestEvent) string {
	if len(evs) == 0 {
		return ""
	}
	return evs[0].UserKey
}
