package publisher

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heal7/shadowcube/internal/redact"
)

// FuzzHAREntry: any HAR entry either fails with an error or gives an event
// whose path is absolute.
func FuzzHAREntry(f *testing.F) {
	f.Add([]byte(`{"startedDateTime":"2026-11-25T11:00:00Z","time":1,"request":{"method":"GET","url":"http://x/a?b=c","headers":[{"name":"A","value":"b"}]},"response":{"status":200,"content":{"text":"aGk=","encoding":"base64"}}}`))
	f.Add([]byte(`{"request":{"url":"::"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := harEvent(raw)
		if err != nil {
			return
		}
		if ev.Path == "" || ev.Path[0] != '/' {
			t.Fatalf("path %q from %s", ev.Path, raw)
		}
	})
}

// FuzzRedact: a value planted at a redacted path, after any prefix of JSON
// values (NDJSON or concatenated), never survives redaction: the body is
// either dropped or valid JSON values without the value, in remove and hmac
// mode alike. Query strings and form bodies lose a planted token the same way.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"x":1}`), "k", "v", false)
	f.Add([]byte(`[{"a":{"b":1}}] {"c":[{"b":2}]}`), "a", "{", true)
	f.Add([]byte(`{"a":`), "", "", false)
	f.Add([]byte(``), "password", "x", true)
	paths := []string{"$.a.b", "$.c[*].b", "$[*].a.b", "$.password"}
	var rules [2]*redact.Rules
	for i, mode := range []string{RedactRemove, RedactHMAC} {
		p, err := newPrivacy(PrivacyConfig{Secret: []byte(testSecret), RedactPaths: paths, RedactMode: mode})
		if err != nil {
			f.Fatal(err)
		}
		rules[i] = p.rules
	}
	const planted = "PLANTED-7f3a"
	f.Fuzz(func(t *testing.T, prefix []byte, key, val string, hmacMode bool) {
		if bytes.Contains(prefix, []byte("PLANTED")) || strings.Contains(key+val, "PLANTED") {
			return
		}
		r := rules[0]
		if hmacMode {
			r = rules[1]
		}
		doc, _ := json.Marshal(map[string]any{"a": map[string]any{"b": planted}, "c": []any{map[string]any{"b": planted}}, "password": planted, "x" + key: val})
		body := append(append(bytes.Clone(prefix), '\n'), doc...)
		out, dropped := r.Body(body, false, "application/json")
		if dropped {
			if out != nil {
				t.Fatal("dropped body returned")
			}
		} else {
			if bytes.Contains(out, []byte(planted)) {
				t.Fatalf("planted value survived: %q", out)
			}
			dec := json.NewDecoder(bytes.NewReader(out))
			for {
				var v any
				if err := dec.Decode(&v); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("invalid JSON %q: %v", out, err)
				}
			}
		}
		q := url.Values{key: {val}, "access_token": {planted}, "PassWord": {planted}}.Encode()
		if got := r.Query(q); strings.Contains(got, planted) {
			t.Fatalf("query %q redacted to %q", q, got)
		}
		if got, _ := r.Body([]byte(q), false, "application/x-www-form-urlencoded"); bytes.Contains(got, []byte(planted)) {
			t.Fatalf("form %q redacted to %q", q, got)
		}
	})
}

// FuzzJWTClaim: any Authorization value is handled without panic, and a
// token not signed with the configured key (alg none, another key, a
// mangled signature) never yields a user id.
func FuzzJWTClaim(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln", `{"sub":"u","exp":9999999999}`, "none")
	f.Add("Bearer a.b", `{"sub":1}`, "HS256")
	v, err := newVerifier(JWTConfig{HS256Secret: []byte(testSecret)})
	if err != nil {
		f.Fatal(err)
	}
	other := []byte("another-secret-of-thirty-two-bytes!!")
	f.Fuzz(func(t *testing.T, authz, claims, alg string) {
		if id := v.userID(authz, time.Time{}); id != "" {
			// Only a token signed with testSecret may pass; the fuzzer cannot forge one.
			t.Fatalf("unsigned Authorization %q gave user %q", authz, id)
		}
		hdr := b64url(`{"alg":` + strconv.Quote(alg) + `,"typ":"JWT"}`)
		body := b64url(claims)
		for _, tok := range []string{hdr + "." + body + ".", hdr + "." + body + "." + b64url("sig")} {
			if id := v.userID("Bearer "+tok, time.Time{}); id != "" {
				t.Fatalf("forged token %q gave user %q", tok, id)
			}
		}
		var mc jwt.MapClaims
		if json.Unmarshal([]byte(claims), &mc) == nil {
			signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString(other)
			if err == nil && v.userID("Bearer "+signed, time.Time{}) != "" {
				t.Fatalf("token signed with another key accepted: %s", claims)
			}
		}
	})
}
