package publisher

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/schemas"
)

// TestEncodeMatchesEncodingJSON: for any event, the hand-written encoder and
// encoding/json produce the same JSON value, which decodes and validates.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	// The encoder lists RequestEvent's and HTTPResponse's fields by hand.
	if n := reflect.TypeFor[schemas.RequestEvent]().NumField(); n != 15 {
		t.Fatalf("schemas.RequestEvent has %d fields, appendEvent knows 15: update encode.go", n)
	}
	if n := reflect.TypeFor[schemas.HTTPResponse]().NumField(); n != 5 {
		t.Fatalf("schemas.HTTPResponse has %d fields, appendEvent knows 5: update encode.go", n)
	}
	str := rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z/{}._~-]{0,12}`), rapid.SampledFrom([]string{"\u2028\"\\\x00\x1f<>&", "\xff\xfe bad utf8", "庚子"}))
	hdr := rapid.Custom(func(t *rapid.T) http.Header {
		if rapid.Bool().Draw(t, "nilHeader") {
			return nil
		}
		return http.Header(rapid.MapOf(str, rapid.SliceOf(str)).Draw(t, "header"))
	})
	rapid.Check(t, func(rt *rapid.T) {
		ev := schemas.RequestEvent{
			V: schemas.Version, ID: str.Draw(rt, "id"), Service: str.Draw(rt, "service"), Route: str.Draw(rt, "route"),
			Method: str.Draw(rt, "method"), Path: str.Draw(rt, "path"), Query: str.Draw(rt, "query"),
			Headers: hdr.Draw(rt, "headers"), Body: rapid.SliceOf(rapid.Byte()).Draw(rt, "body"),
			BodyTruncated: rapid.Bool().Draw(rt, "bt"), UserKey: str.Draw(rt, "uk"), TraceParent: str.Draw(rt, "tp"),
			CapturedAt: time.Unix(0, rapid.Int64Range(0, 4e18).Draw(rt, "at")).In(time.FixedZone("x", rapid.IntRange(-50000, 50000).Draw(rt, "tz"))),
			Source:     schemas.Source(str.Draw(rt, "source")),
			Response: schemas.HTTPResponse{Status: rapid.IntRange(-1000, 1000).Draw(rt, "status"), Headers: hdr.Draw(rt, "rh"),
				Body: rapid.SliceOf(rapid.Byte()).Draw(rt, "rb"), BodyTruncated: rapid.Bool().Draw(rt, "rbt"),
				Latency: time.Duration(rapid.Int64().Draw(rt, "lat"))},
		}
		ours := appendEvent(nil, &ev)
		theirs, err := json.Marshal(&ev)
		if err != nil {
			rt.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(ours, &a); err != nil {
			rt.Fatalf("invalid JSON %q: %v", ours, err)
		}
		if err := json.Unmarshal(theirs, &b); err != nil {
			rt.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			rt.Fatalf("encodings differ:\n ours   %s\n theirs %s", ours, theirs)
		}
	})
}
