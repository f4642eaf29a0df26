package schemas

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestAppendMatchesEncodingJSON: for any event, the hand-written encoders and
// encoding/json produce the same JSON value, which decodes and validates.
func TestAppendMatchesEncodingJSON(t *testing.T) {
	// The encoders list the fields by hand.
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[RequestEvent](): 15, reflect.TypeFor[HTTPResponse](): 5,
		reflect.TypeFor[ShadowResult](): 15, reflect.TypeFor[Freshness](): 4,
	} {
		if n := typ.NumField(); n != want {
			t.Fatalf("%s has %d fields, encode.go knows %d: update it", typ, n, want)
		}
	}
	str := rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z/{}._~-]{0,12}`), rapid.SampledFrom([]string{"\u2028\"\\\x00\x1f<>&", "\xff\xfe bad utf8", "庚子"}))
	hdr := rapid.Custom(func(t *rapid.T) http.Header {
		if rapid.Bool().Draw(t, "nilHeader") {
			return nil
		}
		return http.Header(rapid.MapOf(str, rapid.SliceOf(str)).Draw(t, "header"))
	})
	when := rapid.Custom(func(t *rapid.T) time.Time {
		if rapid.Bool().Draw(t, "zeroTime") {
			return time.Time{}
		}
		return time.Unix(0, rapid.Int64Range(0, 4e18).Draw(t, "at")).In(time.FixedZone("x", rapid.IntRange(-50000, 50000).Draw(t, "tz")))
	})
	resp := rapid.Custom(func(t *rapid.T) HTTPResponse {
		return HTTPResponse{Status: rapid.IntRange(-1000, 1000).Draw(t, "status"), Headers: hdr.Draw(t, "rh"),
			Body: rapid.SliceOf(rapid.Byte()).Draw(t, "rb"), BodyTruncated: rapid.Bool().Draw(t, "rbt"),
			Latency: time.Duration(rapid.Int64().Draw(t, "lat"))}
	})
	respPtr := rapid.Custom(func(t *rapid.T) *HTTPResponse {
		if rapid.Bool().Draw(t, "nilResponse") {
			return nil
		}
		r := resp.Draw(t, "response")
		return &r
	})
	request := rapid.Custom(func(t *rapid.T) RequestEvent {
		return RequestEvent{
			V: Version, ID: str.Draw(t, "id"), Service: str.Draw(t, "service"), Route: str.Draw(t, "route"),
			Method: str.Draw(t, "method"), Path: str.Draw(t, "path"), Query: str.Draw(t, "query"),
			Headers: hdr.Draw(t, "headers"), Body: rapid.SliceOf(rapid.Byte()).Draw(t, "body"),
			BodyTruncated: rapid.Bool().Draw(t, "bt"), UserKey: str.Draw(t, "uk"), TraceParent: str.Draw(t, "tp"),
			CapturedAt: when.Draw(t, "captured"), Source: Source(str.Draw(t, "source")), Response: resp.Draw(t, "response"),
		}
	})
	same := func(t *rapid.T, ours []byte, v any) {
		theirs, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatalf("invalid JSON %q: %v", ours, err)
		}
		if err := json.Unmarshal(theirs, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("encodings differ:\n ours   %s\n theirs %s", ours, theirs)
		}
	}
	t.Run("RequestEvent", func(t *testing.T) {
		rapid.Check(t, func(rt *rapid.T) {
			ev := request.Draw(rt, "event")
			same(rt, AppendRequestEvent(nil, &ev), &ev)
		})
	})
	t.Run("ShadowResult", func(t *testing.T) {
		rapid.Check(t, func(rt *rapid.T) {
			res := ShadowResult{
				V: Version, RequestID: str.Draw(rt, "rid"), Service: str.Draw(rt, "svc"), Route: str.Draw(rt, "rt"),
				Request: request.Draw(rt, "request"), Legacy: resp.Draw(rt, "legacy"),
				Cube: respPtr.Draw(rt, "cube"), CubeError: str.Draw(rt, "cubeErr"),
				Secondary: respPtr.Draw(rt, "secondary"), SecondaryError: str.Draw(rt, "secErr"),
				Freshness: Freshness{Target: str.Draw(rt, "target"), Watermark: when.Draw(rt, "mark"),
					Waited: time.Duration(rapid.Int64().Draw(rt, "waited")), Stale: rapid.Bool().Draw(rt, "stale")},
				ReplayedAt: when.Draw(rt, "replayed"),
				Operation:  str.Draw(rt, "operation"), Skipped: str.Draw(rt, "skipped"),
				LegacyRecheck: respPtr.Draw(rt, "recheck"),
			}
			same(rt, AppendShadowResult(nil, &res), &res)
		})
	})
}
