package publisher

import (
	"bytes"
	"encoding/json"
	"testing"
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

// FuzzRedact: redaction never panics, and its output is valid JSON without
// the redacted value whenever it does not drop the body.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"a":{"b":"SECRET"},"c":[{"b":"SECRET"}]}`), false)
	f.Add([]byte(`[{"a":{"b":"SECRET"}}]`), true)
	f.Add([]byte(`{"a":`), false)
	p, err := newPrivacy(PrivacyConfig{Secret: []byte("k"), RedactPaths: []string{"$.a.b", "$.c[*].b", "$[*].a.b"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, hmacMode bool) {
		p.hmacMode = hmacMode
		out, dropped := p.body(body, false, "application/json")
		if dropped {
			if out != nil {
				t.Fatal("dropped body returned")
			}
			return
		}
		if !bytes.Equal(out, body) && !json.Valid(out) {
			t.Fatalf("invalid JSON %q", out)
		}
	})
}

// FuzzJWTClaim: any Authorization value is handled without panic.
func FuzzJWTClaim(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln")
	f.Add("Bearer a.b")
	f.Fuzz(func(t *testing.T, authz string) {
		_ = jwtClaim(authz, "sub")
	})
}
