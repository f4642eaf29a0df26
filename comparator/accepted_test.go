package comparator

import (
	"errors"
	"testing"

	"github.com/heal7/shadowcube/internal/fileerr"
)

// TestAcceptedErrorsAreFileErrors: every problem of an accepted-signatures
// file is the file error routes and mapping files give, at its line.
func TestAcceptedErrorsAreFileErrors(t *testing.T) {
	for _, c := range []struct {
		data, want string
		line       int
	}{
		{"", "a.yaml:1: file is empty; want version: 1 and an accepted: list", 1},
		{"# nothing\n", "a.yaml:1: file is empty; want version: 1 and an accepted: list", 1},
		{"accepted: []\nversion: 2\n", "a.yaml:2: version: 2: this build reads version 1", 2},
		{"version: 1\naccepted:\n  - signature: s\n    reason: r\n  - route: /x\n    reason: r\n", "a.yaml:5: accepted[1]: want signature, or route and cause", 5},
		{"version: 1\naccepted:\n  - signature: s\n", "a.yaml:3: accepted[0]: reason is required (say why this is expected)", 3},
		{"version: 1\nbogus: 1\n", "a.yaml:2: invalid YAML: unmarshal errors:", 2},
		{"version: [\n", "a.yaml:1: invalid YAML:", 1},
	} {
		_, err := ParseAccepted("a.yaml", []byte(c.data))
		var fe *fileerr.Error
		if !errors.As(err, &fe) || fe.Line != c.line || fe.File != "a.yaml" || len(err.Error()) < len(c.want) || err.Error()[:len(c.want)] != c.want {
			t.Errorf("ParseAccepted(%q) = %v, want a file error starting %q", c.data, err, c.want)
		}
	}
}
