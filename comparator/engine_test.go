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

// TestGolden runs every testdata/golden/<case>.json through the rule engine
// and compares the diff list with <case>.golden (rewrite with -update, then
// review the change).
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
			var prep func(any)
			if e.kind == KindSaju {
				prep = normalizeSaju
			}
			diffs, _, _, err := e.compareResponses(l, c, prep)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(diffs, "", "  ")
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s: diffs differ from %s\n got: %s\nwant: %s", f, golden, got, want)
			}
		})
	}
}
