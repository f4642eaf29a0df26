package comparator

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
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
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("accepted signatures: %w", err)
	}
	return ParseAccepted(path, data)
}

// ParseAccepted parses accepted-signatures YAML; errors name file and line.
func ParseAccepted(name string, data []byte) (*Accepted, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a := &Accepted{exact: map[string]int{}}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s:1: empty file; want version: %d and an accepted: list", name, AcceptedVersion)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(a); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if a.Version != AcceptedVersion {
		return nil, fmt.Errorf("%s: version %d: this build reads version %d", name, a.Version, AcceptedVersion)
	}
	// Line numbers of the entries, for error messages.
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "accepted" && root.Content[i+1].Kind == yaml.SequenceNode {
			for j, n := range root.Content[i+1].Content {
				if j < len(a.Entries) {
					a.Entries[j].Line = n.Line
				}
			}
		}
	}
	var errs []error
	for i, e := range a.Entries {
		switch {
		case e.Signature != "" && (e.Route != "" || e.Cause != ""):
			errs = append(errs, fmt.Errorf("%s:%d: accepted[%d]: give either signature or route+cause, not both", name, e.Line, i))
		case e.Signature == "" && (e.Route == "" || e.Cause == ""):
			errs = append(errs, fmt.Errorf("%s:%d: accepted[%d]: want signature, or route and cause", name, e.Line, i))
		case strings.TrimSpace(e.Reason) == "":
			errs = append(errs, fmt.Errorf("%s:%d: accepted[%d]: reason is required (say why this is expected)", name, e.Line, i))
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
