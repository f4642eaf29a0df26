package schemas

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"pgregory.net/rapid"
)

// FuzzDecodeRequestFast: whatever the plain parser accepts, goccy/go-json
// and encoding/json accept too and decode to the same event (so
// DecodeRequestEvent gives what it gave before the plain parser).
func FuzzDecodeRequestFast(f *testing.F) {
	addExamples(f, "*.json")
	ev := RequestEvent{V: Version, ID: "01HX", Service: "saju", Route: "/api/saju/chart", Method: "POST", Path: "/api/saju/chart",
		Query: "a=1&b=%20", Headers: http.Header{"Content-Type": {"application/json"}, "X-Empty": {}, "X-Two": {"1", "2"}},
		Body: []byte(`{"birth":"1988-02-15"}`), BodyTruncated: true, UserKey: "hmac-sha256:ab", TraceParent: "00-1-2-01",
		CapturedAt: time.Date(2026, 11, 30, 12, 0, 0, 123, time.FixedZone("KST", 9*3600)), Source: SourceTap,
		Response: HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"ok":true}`), Latency: 1234567}}
	f.Add(AppendRequestEvent(nil, &ev))
	f.Add([]byte(` { "v" : "1.0" , "id":"x", "headers":{}, "response":{"status":-0,"latency_ns":-5} } `))
	f.Add([]byte(`{"v":"1.0","id":"庚子","body":"YQ","response":{"status":200}}`))
	f.Add([]byte(`{"v":"1.0","id":"a","id":"b"}`))
	f.Add([]byte(`{"v":"1.0","response":{"status":01}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeRequestFast(data)
		if !ok {
			return
		}
		var g, std RequestEvent
		if err := gojson.Unmarshal(data, &g); err != nil {
			t.Fatalf("plain parser accepts what goccy rejects (%v): %q", err, data)
		}
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("plain parser accepts what encoding/json rejects (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, g) || !reflect.DeepEqual(fast, std) {
			t.Fatalf("decoders differ on %q:\n plain %#v\n goccy %#v\n std   %#v", data, fast, g, std)
		}
	})
}

// TestDecodeRequestFastTakesEncodedEvents: every event the encoder writes
// with plain strings (as captures are) takes the plain parser, and decodes
// to what encoding/json decodes; events with strings that need escapes
// decode the same either way.
func TestDecodeRequestFastTakesEncodedEvents(t *testing.T) {
	plain := rapid.StringMatching(`[a-zA-Z0-9/{}._~=&%:;+ -]{0,16}|庚子[a-z]{0,3}`)
	str := rapid.OneOf(plain, rapid.String(), rapid.SampledFrom([]string{"\u2028\"\\\x00\x1f<>&", "\xff\xfe bad utf8"}))
	rapid.Check(t, func(rt *rapid.T) {
		escapes := rapid.Bool().Draw(rt, "escapes")
		s := plain
		if escapes {
			s = str
		}
		hdr := func(label string) http.Header {
			if rapid.Bool().Draw(rt, label+"Nil") {
				return nil
			}
			return http.Header(rapid.MapOf(s, rapid.SliceOf(s)).Draw(rt, label))
		}
		ev := RequestEvent{
			V: Version, ID: s.Draw(rt, "id"), Service: s.Draw(rt, "service"), Route: s.Draw(rt, "route"),
			Method: s.Draw(rt, "method"), Path: s.Draw(rt, "path"), Query: s.Draw(rt, "query"),
			Headers: hdr("headers"), Body: rapid.SliceOf(rapid.Byte()).Draw(rt, "body"),
			BodyTruncated: rapid.Bool().Draw(rt, "bt"), UserKey: s.Draw(rt, "uk"), TraceParent: s.Draw(rt, "tp"),
			CapturedAt: time.Unix(0, rapid.Int64Range(0, 4e18).Draw(rt, "at")).In(time.FixedZone("x", rapid.IntRange(-50000, 50000).Draw(rt, "tz"))),
			Source:     Source(s.Draw(rt, "source")),
			Response: HTTPResponse{Status: rapid.IntRange(-1000, 1000).Draw(rt, "status"), Headers: hdr("rh"),
				Body: rapid.SliceOf(rapid.Byte()).Draw(rt, "rb"), BodyTruncated: rapid.Bool().Draw(rt, "rbt"),
				Latency: time.Duration(rapid.Int64().Draw(rt, "lat"))},
		}
		data := AppendRequestEvent(nil, &ev)
		var std RequestEvent
		if err := json.Unmarshal(data, &std); err != nil {
			rt.Fatal(err)
		}
		fast, ok := decodeRequestFast(data)
		if !ok {
			if !escapes {
				rt.Fatalf("plain event left to the general decoder: %s", data)
			}
		} else if !reflect.DeepEqual(fast, std) {
			rt.Fatalf("decoders differ on %s:\n plain %#v\n std   %#v", data, fast, std)
		}
		got, err := DecodeRequestEvent(data)
		var want RequestEvent
		werr := decodeSlow(data, "RequestEvent", &want)
		if werr == nil {
			werr = want.Validate()
		}
		if (err == nil) != (werr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			rt.Fatalf("DecodeRequestEvent = %#v, %v; encoding/json gives %#v, %v", got, err, want, werr)
		}
	})
}

// BenchmarkDecodeRequestEvent: a B6-like capture (POST, JSON body, ~1 KiB
// JSON answer) through the plain parser and through goccy/go-json.
func BenchmarkDecodeRequestEvent(b *testing.B) {
	answer := make([]byte, 0, 1100)
	for len(answer) < 1000 {
		answer = append(answer, `{"pillar":"戊辰","stem":"辛","age":7},`...)
	}
	ev := RequestEvent{V: Version, ID: "b6-000123", Service: "saju", Route: "/api/saju/chart/{id}", Method: "POST",
		Path: "/api/saju/chart/123", Headers: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"birth_date":"1988-02-15","birth_time":"23:40","calendar":"solar"}`), UserKey: "hmac-sha256:0123456789abcdef",
		CapturedAt: time.Now().UTC(), Source: SourceTap,
		Response: HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: answer, Latency: time.Millisecond}}
	data := AppendRequestEvent(nil, &ev)
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := DecodeRequestEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := decode[RequestEvent](data, "RequestEvent"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
