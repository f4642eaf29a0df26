package comparator

import (
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heal7/shadowcube/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

type goldenCase struct {
	Rules         Rules           `json:"rules"`
	Legacy        json.RawMessage `json:"legacy"`
	Cube          json.RawMessage `json:"cube"`
	LegacyHeaders http.Header     `json:"legacy_headers"`
	CubeHeaders   http.Header     `json:"cube_headers"`
	CubeStatus    int             `json:"cube_status"`
}

// handExpected are the diffs of each golden case worked out by hand from
// its .json (path kind legacy cube, values as compact JSON, "-" for
// none), independent of the golden files the code wrote: why each diff is
// there (or not) is said next to it. A golden file that drifts from these
// fails too, so -update cannot bless a wrong answer.
var handExpected = map[string][]string{
	// request_id, items[*].ts and every "trace" are ignored; items[0].v
	// and n agree; only items[1].v differs.
	"ignore": {`$.items[1].v changed "y" "z"`},
	// Hanja and Hangul are equal after normalisation (戊辰 = 무진, 甲寅 = 갑인);
	// day 辛丑 vs 경자 (庚子) and hour 戊子 vs 병자 (丙子) differ, so do the
	// day master's stem and yin/yang, all three ten gods and the start age;
	// the interpretation is compared by presence ("text" vs ""); id and
	// request_id are ignored for saju. Values are reported normalised:
	// pillars and stems in Hanja, ten gods in Hangul. Sorted by path.
	"saju_diff": {
		`$.day_master.stem changed "辛" "庚"`,
		`$.day_master.yin_yang changed "yin" "yang"`,
		`$.interpretation changed "text" ""`,
		`$.luck.start_age changed 7 8`,
		`$.pillars.day changed "辛丑" "庚子"`,
		`$.pillars.hour changed "戊子" "丙子"`,
		`$.ten_gods.hour changed "정인" "편관"`,
		`$.ten_gods.month changed "정재" "편재"`,
		`$.ten_gods.year changed "정인" "편인"`,
	},
	// Every field equal after normalisation (偏印 = 편인, 금 = metal, 양 = yang,
	// 을묘 = 乙卯); ids, generated_at ignored; both interpretations present.
	"saju_hangul": nil,
	// Trim, space collapsing and case folding make city and note equal; "A"
	// vs "B" stays; X-Version is missing in the cube; the status differs.
	// Status and headers come first, then the body.
	"strings": {`status changed 200 500`, `header.X-Version missing ["1"] -`, `$.k changed "A" "B"`},
	// score differs by 0.0004 ≤ 0.001; rows[0].w by 0.4 ≤ 0.5; other has no
	// tolerance (1 vs 1.0001); rows[1].w differs by 0.6 > 0.5.
	"tolerance": {`$.other changed 1 1.0001`, `$.rows[1].w changed 2 2.6`},
	// A number vs a string, a boolean vs a string, an array vs an object
	// and null vs 0 are type changes; "gone" is missing in the cube, "new"
	// extra; name agrees. Sorted by path.
	"types": {
		`$.flag type true "true"`,
		`$.gone missing "here" -`,
		`$.id type 7 "7"`,
		`$.nested.a type [1,2] {"0":1}`,
		`$.new extra - 1`,
		`$.nul type null 0`,
	},
	// tags and people are declared unordered and hold the same elements;
	// seq is ordered and holds the same elements in another order: one
	// "order" diff at the array, not three element diffs.
	"unordered": {`$.seq order [1,2,3] [3,1,2]`},
}

func diffLine(d schemas.Diff) string {
	v := func(r schemas.RawJSON) string {
		if len(r) == 0 {
			return "-"
		}
		return string(r)
	}
	return d.Path + " " + string(d.Kind) + " " + v(d.Legacy) + " " + v(d.Cube)
}

// TestGolden runs every testdata/golden/<case>.json through the rule engine
// and compares the diff list with the hand-worked expectation above and
// with <case>.golden (rewrite with -update, then review the change).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var gc goldenCase
			if err := json.Unmarshal(data, &gc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			e, err := compile(gc.Rules)
			if err != nil {
				t.Fatalf("%s: rules: %v", f, err)
			}
			status := gc.CubeStatus
			if status == 0 {
				status = 200
			}
			l := &schemas.HTTPResponse{Status: 200, Headers: gc.LegacyHeaders, Body: gc.Legacy}
			c := &schemas.HTTPResponse{Status: status, Headers: gc.CubeHeaders, Body: gc.Cube}
			diffs, _, _, err := e.compareResponses(l, c)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := handExpected[name]
			if !ok {
				t.Fatalf("%s: no hand-worked expectation in handExpected", name)
			}
			var lines []string
			for _, d := range diffs {
				lines = append(lines, diffLine(d))
			}
			if strings.Join(lines, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: diffs\n%s\nwant (by hand)\n%s", name, strings.Join(lines, "\n"), strings.Join(want, "\n"))
			}
			got, _ := json.MarshalIndent(diffs, "", "  ")
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			file, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if string(got) != string(file) {
				t.Errorf("%s: diffs differ from %s\n got: %s\nwant: %s", f, golden, got, file)
			}
		})
	}
}

// TestIdenticalBodiesSkipDecode: byte-identical answers take the fast path
// (no decode) and still report status and header differences; an AI route
// gets the decoded answer on both sides for its label statistics.
func TestIdenticalBodiesSkipDecode(t *testing.T) {
	body := []byte(`{"label":"cat","score":0.9,"id":1}`)
	for _, tc := range []struct {
		rules     Rules
		wantValue bool
	}{
		{Rules{Kind: KindJSON, Ignore: []string{"$.id"}}, false},
		{Rules{Kind: KindSaju}, false},
		{Rules{Kind: KindAI, Label: "$.label", Score: "$.score"}, true},
	} {
		e, err := compile(tc.rules)
		if err != nil {
			t.Fatal(err)
		}
		l := &schemas.HTTPResponse{Status: 200, Body: body}
		c := &schemas.HTTPResponse{Status: 500, Body: append([]byte(nil), body...)}
		diffs, lv, cv, err := e.compareResponses(l, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) != 1 || diffs[0].Path != "status" {
			t.Fatalf("%s: diffs %+v, want the status only", tc.rules.Kind, diffs)
		}
		if got := lv != nil && cv != nil; got != tc.wantValue {
			t.Fatalf("%s: decoded answers returned %v, want %v", tc.rules.Kind, got, tc.wantValue)
		}
		if tc.wantValue && lookup(cv, e.label) != "cat" {
			t.Fatalf("%s: cube label %v, want cat", tc.rules.Kind, lookup(cv, e.label))
		}
	}
}
