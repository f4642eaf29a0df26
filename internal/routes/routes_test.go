package routes

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	f, err := Load("testdata/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	saju, ok := f.Service("saju")
	if !ok {
		t.Fatal("service saju missing")
	}
	if saju.FreshnessWait.D() != 5*time.Second || saju.Timeout.D() != 2*time.Second || saju.Concurrency != 16 {
		t.Errorf("service settings = %+v", saju)
	}
	if saju.Credentials == nil || saju.Credentials.Kind != "jwt-hs256" || saju.Credentials.TTL.D() != 5*time.Minute {
		t.Errorf("credentials = %+v", saju.Credentials)
	}
	r := saju.Routes[0]
	if r.Compare.Kind != "saju" || r.Compare.Tolerance["$.score"] != 0.001 || r.Sample != 1 || r.Replay != ReplayAlways || !r.Captured() {
		t.Errorf("route 0 = %+v", r)
	}
	if got := saju.Routes[1]; got.Replay != ReplayReads || got.Sample != 1 {
		t.Errorf("defaults not applied: %+v", got)
	}
	if c := saju.Routes[1].Compare; len(c.Presence) != 1 || len(c.Normalize) != 2 {
		t.Errorf("presence/normalize not read: %+v", c)
	}
	ai, _ := f.Service("ai")
	if ai.Routes[0].Compare.TruthHeader != "X-Truth-Label" || ai.Routes[0].Compare.Label != "$.label" || ai.Routes[0].Methods != nil {
		t.Errorf("ai route = %+v", ai.Routes[0])
	}
}

func TestMatch(t *testing.T) {
	f, err := Load("testdata/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	saju, _ := f.Service("saju")
	ai, _ := f.Service("ai")
	tests := []struct {
		svc          *Service
		method, path string
		want         string
	}{
		{saju, "POST", "/api/saju/chart", "/api/saju/chart"},
		{saju, "GET", "/api/saju/chart/42", "/api/saju/chart/{id}"},
		{saju, "GET", "/api/saju/chart/latest", "/api/saju/chart/latest"},
		{saju, "DELETE", "/api/saju/chart/42", ""},
		{saju, "GET", "/api/saju/chart/", ""},
		{saju, "GET", "/api/saju/chart/42/x", ""},
		{ai, "PUT", "/api/ai/analyze", "/api/ai/analyze"},
		{ai, "GET", "/other", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r, ok := tc.svc.Match(tc.method, tc.path)
			got := ""
			if ok {
				got = r.Route
			}
			if got != tc.want {
				t.Fatalf("Match = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBadFiles(t *testing.T) {
	base, err := os.ReadFile("testdata/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
		wantLine       int
		wantField      string
	}{
		{"bad replay", "replay: idempotent-only", "replay: sometimes", 21, "services[0].routes[2].replay"},
		{"unknown field", "        sample: 0.5", "        sampel: 0.5", 22, "services[0].routes[2].sampel"},
		{"sample out of range", "sample: 0.5", "sample: 1.5", 22, "services[0].routes[2].sample"},
		{"bad url", "cube_url: http://127.0.0.1:8003", "cube_url: 127.0.0.1:8003", 24, "services[1].cube_url"},
		{"bad kind", "compare: {kind: ai,", "compare: {kind: llm,", 28, "services[1].routes[0].compare.kind"},
		{"relative route", "route: /api/ai/analyze", "route: api/ai/analyze", 26, "services[1].routes[0].route"},
		{"bad duration", "timeout: 2s", "timeout: soon", 0, "services[0]"},
		{"path without $", "ignore: [$.request_id, $.generated_at]", "ignore: [request_id]", 15, "services[0].routes[0].compare.ignore"},
		{"bad normalize", "normalize: [trim, fold-case]", "normalize: [trim, upper]", 18, "services[0].routes[1].compare.normalize"},
		{"duplicate service", "name: ai", "name: saju", 23, "services[1].name"},
		{"bad credentials", "kind: jwt-hs256, secret_env: SAJU_CUBE_JWT_SECRET", "kind: jwt-hs256", 9, "services[0].credentials.secret_env"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.old) {
				t.Fatalf("fixture lacks %q", tc.old)
			}
			data := strings.Replace(string(base), tc.old, tc.new, 1)
			_, err := Parse("routes.yaml", []byte(data))
			if err == nil {
				t.Fatal("accepted a bad file")
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *routes.Error", err)
			}
			if re.Field != tc.wantField || (tc.wantLine != 0 && re.Line != tc.wantLine) || re.File != "routes.yaml" {
				t.Fatalf("error %q: got %s line %d, want %s line %d", err, re.Field, re.Line, tc.wantField, tc.wantLine)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	base, _ := os.ReadFile("testdata/routes.yaml")
	f.Add(base)
	f.Add([]byte("services: []"))
	f.Add([]byte("services: {a: 1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		for i := range rf.Services {
			s := &rf.Services[i]
			for _, r := range s.Routes {
				if _, ok := s.Match("GET", r.Route); !ok && (len(r.Methods) == 0) && !strings.Contains(r.Route, "{") {
					t.Fatalf("route %q does not match its own path", r.Route)
				}
			}
		}
	})
}
