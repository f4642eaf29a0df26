package redact

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/schemas"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func rules(t testing.TB, c Config) *Rules {
	t.Helper()
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestQuery(t *testing.T) {
	r := rules(t, Config{Params: []string{"Ticket", "-code"}})
	h := rules(t, Config{Secret: secret, Mode: ModeHMAC})
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"a=1&b=2", "a=1&b=2"},
		{"access_token=SECRET", ""},
		{"a=1&access_token=SECRET&b=2", "a=1&b=2"},
		{"ACCESS_TOKEN=SECRET&b=%20x", "b=%20x"},
		{"access%5Ftoken=SECRET&b=2", "b=2"},
		{"a=1&ticket=SECRET", "a=1"},
		{"token", ""},
		{"a=1&&b=2", "a=1&&b=2"},
		{"x=1&password=SECRET&y=2&api_key=SECRET", "x=1&y=2"},
		{"code=KR&key=SECRET", "code=KR"},
	} {
		if got := r.Query(c.in); got != c.want {
			t.Errorf("Query(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	got := h.Query("a=1&token=SECRET")
	if strings.Contains(got, "SECRET") || !strings.HasPrefix(got, "a=1&token="+HMACPrefix) {
		t.Errorf("hmac Query = %q", got)
	}
}

func TestBody(t *testing.T) {
	r := rules(t, Config{Paths: []string{"$.password", "$.user.email"}})
	for _, c := range []struct {
		name, ct, in, want string
		dropped            bool
	}{
		{"form", "application/x-www-form-urlencoded", "user=kim&password=SECRET&x=1", "user=kim&x=1", false},
		{"form charset", "application/x-www-form-urlencoded; charset=utf-8", "password=SECRET", "", false},
		{"ndjson second value", "application/x-ndjson", "{\"x\":1}\n{\"password\":\"SECRET\"}\n", "{\"x\":1}\n{}\n", false},
		{"concatenated", "", `{"x":1}{"user":{"email":"SECRET","n":2}}`, "{\"x\":1}\n{\"user\":{\"n\":2}}\n", false},
		{"single", "application/json", `{"password":"SECRET","a":"<b>"}`, `{"a":"<b>"}`, false},
		{"no match", "application/json", `{"a":1}`, `{"a":1}`, false},
		{"malformed tail", "application/json", `{"a":1} {"password":"SEC`, "", true},
		{"not json", "text/plain", `password=SECRET`, `password=SECRET`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, dropped := r.Body([]byte(c.in), false, c.ct)
			if string(got) != c.want || dropped != c.dropped {
				t.Errorf("Body(%q) = %q, %v; want %q, %v", c.in, got, dropped, c.want, c.dropped)
			}
		})
	}
	if got, dropped := r.Body([]byte(`{"password":"SEC`), true, "application/json"); got != nil || !dropped {
		t.Errorf("truncated JSON: %q %v", got, dropped)
	}
}

func TestHeadersAllowlist(t *testing.T) {
	r := rules(t, Config{AllowHeaders: []string{"x-checksum"}, StripHeaders: []string{"User-Agent"}})
	h := http.Header{
		"Content-Type":       {"application/json"},
		"X-Csrf-Token":       {"SECRET"},
		"X-Access-Token":     {"SECRET"},
		"Authorization":      {"Bearer SECRET"},
		"Set-Cookie":         {"sid=SECRET"},
		"User-Agent":         {"curl"},
		"X-Checksum":         {"abc"},
		"Trailer-X-Checksum": {"abc"},
		"Trailer-X-Secret":   {"SECRET"},
		"Traceparent":        {"00-1-2-01"},
		"Location":           {"/next?a=1&access_token=SECRET#f"},
		"x-request-id":       {"r1"},
	}
	got := r.Headers(h)
	if s := fmt.Sprint(got); strings.Contains(s, "SECRET") || strings.Contains(s, "curl") {
		t.Errorf("published headers %v", got)
	}
	for _, k := range []string{"Content-Type", "X-Checksum", "Trailer-X-Checksum", "Traceparent", "x-request-id"} {
		if len(got[k]) == 0 {
			t.Errorf("%s dropped: %v", k, got)
		}
	}
	if got.Get("Location") != "/next?a=1#f" {
		t.Errorf("Location = %q", got.Get("Location"))
	}
	if h.Get("Location") != "/next?a=1&access_token=SECRET#f" {
		t.Errorf("Headers wrote its input")
	}
	in := h.Clone()
	if out := r.HeadersInPlace(in); fmt.Sprint(out) != fmt.Sprint(got) {
		t.Errorf("in place %v, copy %v", out, got)
	}
	var nilRules *Rules
	if got := nilRules.Headers(http.Header{"Set-Cookie": {"x"}, "Content-Type": {"a"}}); len(got) != 1 {
		t.Errorf("nil rules: %v", got)
	}
}

func TestResponse(t *testing.T) {
	r := rules(t, Config{Paths: []string{"$.token"}})
	resp := &schemas.HTTPResponse{Status: 200, Headers: http.Header{"Set-Cookie": {"sid=SECRET"}, "Content-Type": {"application/json"}},
		Body: []byte("{\"a\":1}\n{\"token\":\"SECRET\"}")}
	if r.Response(resp) {
		t.Fatal("dropped")
	}
	if s := fmt.Sprint(resp); strings.Contains(s, "SECRET") {
		t.Errorf("answer still holds the secret: %s", s)
	}
}

func TestSecretAndConfigErrors(t *testing.T) {
	_, err := New(Config{Secret: []byte("short"), Mode: "nope", Paths: []string{"a.b"}})
	if !errors.Is(err, ErrSecretTooShort) || !strings.Contains(err.Error(), "redact mode") || !strings.Contains(err.Error(), "a.b") {
		t.Errorf("err = %v", err)
	}
	if _, err := New(Config{Mode: ModeHMAC}); err == nil {
		t.Error("hmac without secret accepted")
	}
}

func TestURLAndErr(t *testing.T) {
	if got := URLString("https://user:s3cret@legacy:8443/a?access_token=T#x"); got != "https://user:xxxxx@legacy:8443/a" {
		t.Errorf("URLString = %q", got)
	}
	err := fmt.Errorf("call: %w", &url.Error{Op: "Get", URL: "http://h/p?token=SECRET", Err: errors.New("refused")})
	if s := Err(err).Error(); strings.Contains(s, "SECRET") {
		t.Errorf("Err = %s", s)
	}
}

func TestText(t *testing.T) {
	err := fmt.Errorf("connect to NATS at nats://user:s3cret@127.0.0.1:4222, tls://a:b@h: refused")
	if s := Secrets(err).Error(); strings.Contains(s, "s3cret") || strings.Contains(s, "a:b@") || !strings.Contains(s, "nats://REDACTED@127.0.0.1:4222") {
		t.Errorf("Secrets = %s", s)
	}
}

// TestQueryProperty: for any sequence of parameters, remove mode keeps
// exactly the non-secret ones, byte for byte and in order, and hmac mode
// keeps every name in place with no secret value left.
func TestQueryProperty(t *testing.T) {
	rm := rules(t, Config{})
	hm := rules(t, Config{Secret: secret, Mode: ModeHMAC})
	names := append([]string{"a", "page", "lang", "q", "Access_Token", "PASSWORD", "x%5Fy"}, DefaultParams[:8]...)
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 12).Draw(rt, "n")
		var parts, kept, keptNames []string
		for i := 0; i < n; i++ {
			name := rapid.SampledFrom(names).Draw(rt, "name")
			secretParam := rm.param(name)
			val := fmt.Sprintf("v%d", i)
			if secretParam {
				val = fmt.Sprintf("SECRET%d", i)
			}
			p := name + "=" + url.QueryEscape(val)
			parts = append(parts, p)
			keptNames = append(keptNames, name)
			if !secretParam {
				kept = append(kept, p)
			}
		}
		raw := strings.Join(parts, "&")
		if got, want := rm.Query(raw), strings.Join(kept, "&"); got != want {
			rt.Fatalf("remove: Query(%q) = %q, want %q", raw, got, want)
		}
		got := hm.Query(raw)
		if strings.Contains(got, "SECRET") {
			rt.Fatalf("hmac: Query(%q) = %q keeps a secret", raw, got)
		}
		var gotNames []string
		for _, p := range strings.Split(got, "&") {
			if p != "" {
				name, _, _ := strings.Cut(p, "=")
				gotNames = append(gotNames, name)
			}
		}
		if strings.Join(gotNames, ",") != strings.Join(keptNames, ",") {
			rt.Fatalf("hmac: names %v, want %v", gotNames, keptNames)
		}
	})
}
