package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchemas loads every embedded schema into one compiler so the
// cross-file $refs of shadow_result resolve.
func compileSchemas(t testing.TB) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	names := []string{"request_event", "change_event", "shadow_result", "mismatch", "dead_letter"}
	for _, n := range names {
		f, err := Files.Open(n + ".schema.json")
		if err != nil {
			t.Fatalf("open schema %s: %v", n, err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("parse schema %s: %v", n, err)
		}
		if err := c.AddResource("https://github.com/heal7/shadowcube/schemas/"+n+".schema.json", doc); err != nil {
			t.Fatalf("add schema %s: %v", n, err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, n := range names {
		s, err := c.Compile("https://github.com/heal7/shadowcube/schemas/" + n + ".schema.json")
		if err != nil {
			t.Fatalf("compile schema %s: %v", n, err)
		}
		out[n] = s
	}
	return out
}

// schemaFor maps a testdata file to its schema and decoder by file name prefix.
func schemaFor(name string) (schema string, roundTrip func([]byte) (any, error)) {
	switch {
	case strings.HasPrefix(name, "request_event"):
		return "request_event", func(b []byte) (any, error) { return DecodeRequestEvent(b) }
	case strings.HasPrefix(name, "change_event"):
		return "change_event", func(b []byte) (any, error) { return DecodeChangeEvent(b) }
	case strings.HasPrefix(name, "shadow_result"):
		return "shadow_result", func(b []byte) (any, error) { return DecodeShadowResult(b) }
	case strings.HasPrefix(name, "mismatch"):
		return "mismatch", func(b []byte) (any, error) { return DecodeMismatch(b) }
	case strings.HasPrefix(name, "dead_letter"):
		return "dead_letter", func(b []byte) (any, error) { return DecodeDeadLetter(b) }
	}
	return "", nil
}

func TestExamplesValidateAndRoundTrip(t *testing.T) {
	schemas := compileSchemas(t)
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			name, decode := schemaFor(filepath.Base(file))
			if decode == nil {
				t.Fatalf("no schema for %s: name examples after their event type", file)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas[name].Validate(inst); err != nil {
				t.Fatalf("example does not validate against %s: %v", name, err)
			}
			ev, err := decode(raw)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			again, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("round trip changed the event (-file +encoded):\n%s", diff)
			}
			// What we encode must validate too.
			inst2, _ := jsonschema.UnmarshalJSON(bytes.NewReader(again))
			if err := schemas[name].Validate(inst2); err != nil {
				t.Fatalf("re-encoded event does not validate: %v", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/request_event.json")
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("fixture lacks %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name      string
		data      []byte
		wantIs    error
		wantField string
		wantText  string
	}{
		{name: "unknown major version", data: replace(`"v": "1.0"`, `"v": "2.0"`), wantIs: ErrUnknownVersion, wantText: `"2.0"`},
		{name: "missing version", data: replace(`"v": "1.0",`, ``), wantField: "v"},
		{name: "version not a string", data: replace(`"v": "1.0"`, `"v": 1`), wantField: "v"},
		{name: "status wrong type", data: replace(`"status": 200`, `"status": "200"`), wantField: "response.status"},
		{name: "status out of range", data: replace(`"status": 200`, `"status": 42`), wantField: "response.status"},
		{name: "missing id", data: replace(`"id": "01JD3Q9M2K6W8X4Y7Z0A1B2C3D",`, ``), wantField: "id"},
		{name: "bad source", data: replace(`"source": "tap"`, `"source": "magic"`), wantField: "source"},
		{name: "body not base64", data: replace(`"body": "eyJiaXJ0`, `"body": "!!!`), wantText: "illegal base64"},
		{name: "oversize", data: append(bytes.Repeat([]byte(" "), MaxEventSize), good...), wantIs: ErrTooLarge},
		{name: "not json", data: []byte(`{"v":`), wantText: "invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequestEvent(tc.data)
			if err == nil {
				t.Fatal("decode accepted bad input")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if tc.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Errorf("error %v does not name field %q", err, tc.wantField)
				}
			}
			if tc.wantText != "" && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}

func TestChangeEventLSNAndIndex(t *testing.T) {
	good, _ := os.ReadFile("testdata/change_event.json")
	ev, err := DecodeChangeEvent(good)
	if err != nil {
		t.Fatal(err)
	}
	if ev.CommitLSN != LSN(0x16)<<32|0xB374D848 {
		t.Errorf("commit LSN = %s", ev.CommitLSN)
	}
	if ev.New["birth_hour"] != nil || *ev.New["score"] != "NaN" {
		t.Errorf("row values not kept exactly: %v", ev.New)
	}
	bad := bytes.Replace(good, []byte(`"index": 1`), []byte(`"index": 3`), 1)
	if _, err := DecodeChangeEvent(bad); err == nil || !strings.Contains(err.Error(), `"index"`) {
		t.Errorf("index outside tx accepted or unnamed: %v", err)
	}
	bad = bytes.Replace(good, []byte(`"16/B374D848"`), []byte(`"16-B374D848"`), 1)
	if _, err := DecodeChangeEvent(bad); err == nil || !strings.Contains(err.Error(), "16-B374D848") {
		t.Errorf("bad LSN accepted or not named: %v", err)
	}
}

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want LSN
		ok   bool
	}{
		{"0/0", 0, true},
		{"16/B374D848", 0x16_B374D848, true},
		{"ffffffff/ffffffff", 1<<64 - 1, true},
		{"0/00016", 0x16, true},
		{"1/2/3", 0, false},
		{"/1", 0, false},
		{"1/", 0, false},
		{"123456789/0", 0, false},
		{"g/0", 0, false},
		{"1/+2", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLSN(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseLSN(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		service, route, want string
	}{
		{"saju", "/api/saju/chart", "legacy.req.saju.api.saju.chart"},
		{"saju", "/api/saju/chart/{id}", "legacy.req.saju.api.saju.chart.~7Bid~7D"},
		{"ai", "/", "legacy.req.ai.~"},
		{"a.b", "/v1.2/x y/*/>", "legacy.req.a~2Eb.v1~2E2.x~20y.~2A.~3E"},
		{"saju", "/api//x/", "legacy.req.saju.api.~.x.~"},
	}
	for _, tc := range tests {
		t.Run(tc.route, func(t *testing.T) {
			got := RequestSubject(tc.service, tc.route)
			if got != tc.want {
				t.Fatalf("RequestSubject = %q, want %q", got, tc.want)
			}
			svc, route, err := ParseRequestSubject(got)
			if err != nil || svc != tc.service || route != tc.route {
				t.Fatalf("ParseRequestSubject(%q) = %q, %q, %v", got, svc, route, err)
			}
		})
	}
	if got := ChangeSubject("heal7", "public", "saju_records"); got != "cdc.heal7.public.saju_records" {
		t.Errorf("ChangeSubject = %q", got)
	}
	if got := DLQSubject("sync"); got != "dlq.sync" {
		t.Errorf("DLQSubject = %q", got)
	}
	if got := ShadowResultSubject("saju", "/api/saju/chart"); got != "shadow.result.saju.api.saju.chart" {
		t.Errorf("ShadowResultSubject = %q", got)
	}
	for _, bad := range []string{"legacy.req.saju", "legacy.req.s.a~ZZ", "other.x.y", "legacy.req.s.a~4"} {
		if _, _, err := ParseRequestSubject(bad); err == nil {
			t.Errorf("ParseRequestSubject(%q) accepted", bad)
		}
	}
}
