package schemas

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addExamples(f *testing.F, glob string) {
	files, _ := filepath.Glob(filepath.Join("testdata", glob))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":"1.0"}`))
	f.Add([]byte(`{"v":"9.0"}`))
	f.Add([]byte(`null`))
}

// FuzzDecodeRequestEvent: the decoder never panics, and anything it accepts
// re-encodes to an event it accepts again, unchanged.
func FuzzDecodeRequestEvent(f *testing.F) {
	addExamples(f, "request_event*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeRequestEvent(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		ev2, err := DecodeRequestEvent(again)
		if err != nil {
			t.Fatalf("re-decode of accepted event failed: %v", err)
		}
		b2, _ := json.Marshal(ev2)
		if string(b2) != string(again) {
			t.Fatalf("not stable:\n%s\n%s", again, b2)
		}
	})
}

func FuzzDecodeChangeEvent(f *testing.F) {
	addExamples(f, "change_event*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeChangeEvent(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeChangeEvent(again); err != nil {
			t.Fatalf("re-decode of accepted event failed: %v", err)
		}
	})
}

func FuzzDecodeShadowResultAndMismatch(f *testing.F) {
	addExamples(f, "*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if ev, err := DecodeShadowResult(data); err == nil {
			b, _ := json.Marshal(ev)
			if _, err := DecodeShadowResult(b); err != nil {
				t.Fatalf("re-decode ShadowResult: %v", err)
			}
		}
		if ev, err := DecodeMismatch(data); err == nil {
			b, _ := json.Marshal(ev)
			if _, err := DecodeMismatch(b); err != nil {
				t.Fatalf("re-decode Mismatch: %v", err)
			}
		}
	})
}

// FuzzSubjectEscaping: any token escapes to a valid NATS token and back; any
// absolute route survives the subject round trip.
func FuzzSubjectEscaping(f *testing.F) {
	for _, s := range []string{"", "saju", "/api/saju/chart", "/api/saju/chart/{id}", "a.b*c>d", "~", "~7E", "한글", " \t"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, service, route string) {
		tok := EscapeToken(service)
		if tok == "" || strings.ContainsAny(tok, ". \t\r\n*>") {
			t.Fatalf("EscapeToken(%q) = %q is not a valid subject token", service, tok)
		}
		back, err := UnescapeToken(tok)
		if err != nil || back != service {
			t.Fatalf("UnescapeToken(EscapeToken(%q)) = %q, %v", service, back, err)
		}
		route = "/" + strings.TrimPrefix(route, "/")
		subj := RequestSubject(service, route)
		for _, tk := range strings.Split(subj, ".") {
			if tk == "" || strings.ContainsAny(tk, " \t\r\n*>") {
				t.Fatalf("subject %q has invalid token %q", subj, tk)
			}
		}
		svc, r, err := ParseRequestSubject(subj)
		if err != nil || svc != service || r != route {
			t.Fatalf("round trip of (%q, %q) via %q = (%q, %q, %v)", service, route, subj, svc, r, err)
		}
	})
}
