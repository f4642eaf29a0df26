package schemas

import (
	"reflect"

	"encoding/json"
	gojson "github.com/goccy/go-json"
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

// FuzzDecodeDeadLetter: the decoder never panics, and an accepted envelope
// encodes (Encode) to one it accepts again, unchanged.
func FuzzDecodeDeadLetter(f *testing.F) {
	addExamples(f, "dead_letter*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDeadLetter(data)
		if err != nil {
			return
		}
		again, err := d.Encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		d2, err := DecodeDeadLetter(again)
		if err != nil {
			t.Fatalf("re-decode of accepted envelope failed: %v", err)
		}
		b2, _ := d2.Encode()
		if string(b2) != string(again) {
			t.Fatalf("not stable:\n%s\n%s", again, b2)
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

// FuzzDecodersAgree: whatever the fast parser (goccy/go-json) accepts,
// encoding/json accepts too and decodes to the same event; whatever it
// rejects goes through encoding/json anyway.
func FuzzDecodersAgree(f *testing.F) {
	addExamples(f, "*.json")
	f.Add([]byte(`{"v":"1.0","id":"a\xff\u00e9\ud800","headers":{"A":null},"body":"YQ==","captured_at":"2026-01-01T00:00:00+09:00"}`))
	f.Add([]byte(`{"V":"1.0","ID":"x","Id":"y","response":{"status":2e2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		agree[RequestEvent](t, data)
		agree[ChangeEvent](t, data)
		agree[ShadowResult](t, data)
		agree[Mismatch](t, data)
		agree[Watermark](t, data)
		agree[DeadLetter](t, data)
	})
}

func agree[T any](t *testing.T, data []byte) {
	var fast, std T
	if gojson.Unmarshal(data, &fast) != nil {
		return
	}
	if err := json.Unmarshal(data, &std); err != nil {
		t.Fatalf("%T: goccy accepts what encoding/json rejects (%v): %q", fast, err, data)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("%T: decoders differ on %q:\n goccy %#v\n std   %#v", fast, data, fast, std)
	}
}
