package comparator

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/heal7/shadowcube/internal/fileerr"
)

// AcceptedVersion is the version of the accepted-signatures file format.
const AcceptedVersion = 1

// AcceptedEntry accepts a mismatch signature as expected: either the exact
// Signature, or every signature of Route (and Service) whose causes include
// Cause. Reason says why, for the next analyst.
type AcceptedEntry struct {
	Signature string `yaml:"signature,omitempty"`
	Service   string `yaml:"service,omitempty"`
	Route     string `yaml:"route,omitempty"`
	Cause     string `yaml:"cause,omitempty"`
	Reason    string `yaml:"reason"`
	Line      int    `yaml:"-"`
}

// Accepted is a parsed accepted-signatures file:
//
//	version: 1
//	accepted:
//	  - signature: "saju:/api/saju/chart:$.day_master,$.elements,$.pillars.day,$.ten_gods:zi-hour"
//	    reason: the cube keeps the day until midnight on purpose
//	  - route: /api/saju/chart
//	    cause: solar-term-boundary
//	    reason: term precision differs by design
type Accepted struct {
	Version int             `yaml:"version"`
	Entries []AcceptedEntry `yaml:"accepted"`
	exact   map[string]int
}

// LoadAccepted reads an accepted-signatures file.
func LoadAccepted(path string) (*Accepted, error) {
	return fileerr.Read(path, "accepted signatures", ParseAccepted)
}

// ParseAccepted parses accepted-signatures YAML; errors are file errors
// (internal/fileerr) naming file, line and entry.
func ParseAccepted(name string, data []byte) (*Accepted, error) {
	root, err := fileerr.Document(name, data, fmt.Sprintf("version: %d and an accepted: list", AcceptedVersion))
	if err != nil {
		return nil, err
	}
	a := &Accepted{exact: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(a); err != nil {
		return nil, fileerr.YAML(name, err)
	}
	// Line numbers of the version and the entries, for error messages.
	versionLine := root.Line
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "version" {
			versionLine = root.Content[i].Line
		}
		if root.Content[i].Value == "accepted" && root.Content[i+1].Kind == yaml.SequenceNode {
			for j, n := range root.Content[i+1].Content {
				if j < len(a.Entries) {
					a.Entries[j].Line = n.Line
				}
			}
		}
	}
	if a.Version != AcceptedVersion {
		return nil, &fileerr.Error{File: name, Line: versionLine, Field: "version", Msg: fmt.Sprintf("%d: this build reads version %d", a.Version, AcceptedVersion)}
	}
	var errs []error
	for i, e := range a.Entries {
		bad := func(msg string) {
			errs = append(errs, &fileerr.Error{File: name, Line: e.Line, Field: fmt.Sprintf("accepted[%d]", i), Msg: msg})
		}
		switch {
		case e.Signature != "" && (e.Route != "" || e.Cause != ""):
			bad("give either signature or route+cause, not both")
		case e.Signature == "" && (e.Route == "" || e.Cause == ""):
			bad("want signature, or route and cause")
		case strings.TrimSpace(e.Reason) == "":
			bad("reason is required (say why this is expected)")
		}
		if e.Signature != "" {
			a.exact[e.Signature] = i
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// Match returns the entry accepting a mismatch, if any.
func (a *Accepted) Match(service, route, signature string, causes []string) (AcceptedEntry, bool) {
	if a == nil {
		return AcceptedEntry{}, false
	}
	if i, ok := a.exact[signature]; ok {
		return a.Entries[i], true
	}
	for _, e := range a.Entries {
		if e.Signature != "" || e.Route != route || (e.Service != "" && e.Service != service) {
			continue
		}
		for _, c := range causes {
			if c == e.Cause {
				return e, true
			}
		}
	}
	return AcceptedEntry{}, false
}

// Signature groups mismatches: service, route, the sorted set of differing
// paths (array indices generalised to [*]) and the causes.
func Signature(service, route string, paths, causes []string) string {
	ps := append([]string(nil), paths...)
	sort.Strings(ps)
	ps = uniq(ps)
	return service + ":" + route + ":" + strings.Join(ps, ",") + ":" + strings.Join(causes, "+")
}

func uniq(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
