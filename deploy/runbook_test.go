package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var runbookRow = regexp.MustCompile("(?m)^\\| `(Shadowcube[A-Za-z0-9]+)` \\|")

// TestRunbookCoversEveryAlert: docs/operations.md has one runbook row per
// alert of deploy/prometheus/rules.yml, and no row for an alert that does
// not exist.
func TestRunbookCoversEveryAlert(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range runbookRow.FindAllStringSubmatch(string(doc), -1) {
		if rows[m[1]] {
			t.Errorf("operations.md: two runbook rows for %s", m[1])
		}
		rows[m[1]] = true
	}
	if len(rows) < 5 {
		t.Fatalf("operations.md: only %d runbook rows found", len(rows))
	}
	data, err := os.ReadFile("prometheus/rules.yml")
	if os.IsNotExist(err) {
		// The rules come with the monitoring work; until it is merged
		// there is nothing to compare the rows with.
		t.Logf("deploy/prometheus/rules.yml not on this branch: %d runbook rows unchecked", len(rows))
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = true
				if !rows[r.Alert] {
					t.Errorf("alert %s has no runbook row in docs/operations.md", r.Alert)
				}
			}
		}
	}
	for r := range rows {
		if !alerts[r] {
			t.Errorf("docs/operations.md has a runbook row for %s, which rules.yml does not define (have %s)", r, strings.Join(sortedKeys(alerts), ", "))
		}
	}
}
