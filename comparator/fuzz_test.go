package comparator

import (
	"encoding/json"
	"reflect"
	"testing"

	gojson "github.com/goccy/go-json"
)

// fuzzRuleSets are rule sets the fuzzer picks from (wildcard patterns only:
// go-cmp may align array elements of unequal arrays differently from the
// fast path, and then a fixed index names different elements).
var fuzzRuleSets = []Rules{
	{},
	{Ignore: []string{"$.a", "$..id", "$.b[*].c"}},
	{Tolerance: map[string]float64{"$.n": 0.5, "$..x": 1}},
	{Unordered: []string{"$.b", "$..tags"}},
	{Presence: []string{"$.text"}, Normalize: StringNorm{Trim: true, CollapseSpace: true, FoldCase: true}},
	{Ignore: []string{"$.*"}},
	{Kind: KindSaju},
	{Unordered: []string{"$.b"}, Ignore: []string{"$.b[*].id"}, Tolerance: map[string]float64{"$.b[*].x": 0.1}},
}

// FuzzCompareJSON checks the rule engine on arbitrary JSON: the fast path and
// go-cmp always agree, a document never differs from itself (nor from a
// second decode of its bytes: compareResponses skips identical bodies), and a pair's
// differences are symmetric (missing one way is extra the other way).
func FuzzCompareJSON(f *testing.F) {
	seeds := [][2]string{
		{`{"a":1,"b":[1,2]}`, `{"a":2,"b":[2,1]}`},
		{`{"n":1.2,"x":3}`, `{"n":1.5,"x":4.5}`},
		{`{"b":[{"id":1,"c":2,"x":1.0},{"id":2,"x":2}]}`, `{"b":[{"id":3,"x":2.05},{"id":4,"c":9,"x":1}]}`},
		{`{"text":" Hi ","tags":["a","b"]}`, `{"text":"x","tags":["b","a","a"]}`},
		{`[1,"a",null,true,{"k":[]}]`, `[1,"a",null,false,{"k":{}}]`},
		{`{"pillars":{"day":"庚子"},"request_id":"1"}`, `{"pillars":{"day":"경자"},"request_id":"2"}`},
		{`"s"`, `1`},
	}
	for i, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]), uint8(i))
	}
	f.Fuzz(func(t *testing.T, a, b []byte, pick uint8) {
		var x, y any
		if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
			return
		}
		e, err := compile(fuzzRuleSets[int(pick)%len(fuzzRuleSets)])
		if err != nil {
			t.Fatal(err)
		}
		if e.kind == KindSaju {
			normalizeSaju(x)
			normalizeSaju(y)
		}
		eq := e.equal(x, y)
		diffs, err := e.diffValues(x, y)
		if err != nil {
			t.Fatalf("diffValues: %v", err)
		}
		if eq != (len(diffs) == 0) {
			t.Fatalf("fast path says equal=%v, go-cmp found %d diffs %+v\nlegacy %s\ncube   %s", eq, len(diffs), diffs, a, b)
		}
		// compareResponses skips byte-identical bodies: two separate decodes
		// of the same bytes, each normalised, must never differ.
		var x2 any
		if json.Unmarshal(a, &x2) != nil {
			t.Fatal("second decode failed")
		}
		if e.kind == KindSaju {
			normalizeSaju(x2)
		}
		if !e.equal(x, x2) {
			t.Fatalf("two decodes of the same body differ\n%s", a)
		}
		self, err := e.diffValues(x, x)
		if err != nil || len(self) > 0 || !e.equal(x, x) {
			t.Fatalf("document differs from itself: %+v %v\n%s", self, err, a)
		}
		back, err := e.diffValues(y, x)
		if err != nil {
			t.Fatal(err)
		}
		if (len(back) == 0) != (len(diffs) == 0) || e.equal(y, x) != eq {
			t.Fatalf("asymmetric: %d diffs one way, %d the other\nlegacy %s\ncube   %s", len(diffs), len(back), a, b)
		}
		for _, d := range diffs {
			if d.Path == "" || d.Kind == "" {
				t.Fatalf("diff without path or kind: %+v", d)
			}
		}
	})
}

// FuzzDecodeBodyAgree: a body the fast JSON parser (goccy/go-json) accepts,
// encoding/json accepts too, with the same value.
func FuzzDecodeBodyAgree(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1,2.5e3,-0],"c":null}`, `"\ud800x\xff"`, `1e400`, `{"a":1,"a":2}`, `[1,`, ` {"k":"\u00e9"} `, `tru`, `{"a":{"b":[{}]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast any
		if gojson.Unmarshal(data, &fast) != nil {
			return
		}
		var std any
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("goccy accepts what encoding/json rejects (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("decoders differ on %q:\n goccy %#v\n std   %#v", data, fast, std)
		}
	})
}
