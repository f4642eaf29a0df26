package webui

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTokenNeverPrints: the UI token prints, logs and marshals redacted.
func TestTokenNeverPrints(t *testing.T) {
	const secret = "s3cret-ui-token"
	tok := Token(secret)
	cfg := Config{Addr: "x", Token: tok}
	var sb strings.Builder
	log := slog.New(slog.NewTextHandler(&sb, nil))
	log.Info("config", "token", tok, "cfg", cfg)
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, tok), sb.String(), string(j)} {
		if strings.Contains(s, secret) {
			t.Fatalf("token printed: %s", s)
		}
	}
	if !strings.Contains(sb.String(), "[redacted]") {
		t.Fatalf("log shows no redaction marker: %s", sb.String())
	}
}

// TestAuthTokenAndSessions: only the configured token passes; a session
// cookie is accepted only as signed by this process and before expiry;
// its CSRF token is bound to it.
func TestAuthTokenAndSessions(t *testing.T) {
	a, err := newAuth("right-token")
	if err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]bool{"right-token": true, "right-toke": false, "right-token ": false, "": false, "RIGHT-TOKEN": false} {
		if got := a.tokenOK(tok); got != want {
			t.Errorf("tokenOK(%q) = %v, want %v", tok, got, want)
		}
	}
	off, _ := newAuth("")
	if off.tokenOK("") || off.tokenOK("x") {
		t.Error("no configured token, yet a token passed")
	}
	s1, err := a.newSession()
	if err != nil {
		t.Fatal(err)
	}
	p1, ok := a.session(s1)
	if !ok {
		t.Fatal("fresh session refused")
	}
	s2, _ := a.newSession()
	p2, _ := a.session(s2)
	if a.csrfFor(p1) == a.csrfFor(p2) {
		t.Error("two sessions share a CSRF token")
	}
	other, _ := newAuth("right-token")
	if _, ok := other.session(s1); ok {
		t.Error("a session of another process (key) was accepted")
	}
	tampered := s1[:len(s1)-2] + "AA"
	if _, ok := a.session(tampered); ok {
		t.Error("tampered session accepted")
	}
	a.now = func() time.Time { return time.Now().Add(sessionTTL + time.Minute) }
	if _, ok := a.session(s1); ok {
		t.Error("expired session accepted")
	}
}

// TestParseFilter: the URL query round-trips; bad values name the
// parameter.
func TestParseFilter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	q := url.Values{"since": {"24h"}, "until": {"2026-11-30T11:00:00Z"}, "service": {"saju"}, "route": {"/api/saju/chart"},
		"cause": {"zi-hour"}, "signature": {"saju:/x:$.a:zi-hour"}, "verdict": {"open"}, "refresh": {"0"}}
	f, err := parseFilter(q, now)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Since.Equal(now.Add(-24*time.Hour)) || !f.Until.Equal(now.Add(-time.Hour)) || f.Refresh != 0 {
		t.Fatalf("filter %+v", f)
	}
	back, err := url.ParseQuery(strings.TrimPrefix(f.With("/"), "/?"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range q {
		if back.Get(k) != q.Get(k) {
			t.Errorf("%s: %q round-trips as %q", k, q.Get(k), back.Get(k))
		}
	}
	if d, _ := parseFilter(url.Values{"since": {"7d"}}, now); !d.Since.Equal(now.Add(-7 * 24 * time.Hour)) {
		t.Errorf("7d: %v", d.Since)
	}
	for _, bad := range []url.Values{{"since": {"soon"}}, {"until": {"x"}}, {"refresh": {"-1"}}, {"verdict": {"maybe"}},
		{"since": {"2026-11-30"}, "until": {"2026-11-29"}}} {
		var name string
		for k := range bad {
			name = k
		}
		if _, err := parseFilter(bad, now); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want one naming %s", bad, err, name)
		}
	}
}

// TestSafeBack: the page to return to after a POST is a path of this
// server, never another host.
func TestSafeBack(t *testing.T) {
	for in, want := range map[string]string{
		"/route?service=a": "/route?service=a", "": "/", "//evil.example/x": "/", "https://evil.example/": "/",
		`/\evil.example`: "/", "route": "/",
	} {
		if got := safeBack(in); got != want {
			t.Errorf("safeBack(%q) = %q, want %q", in, got, want)
		}
	}
}
