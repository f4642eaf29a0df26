package comparator

import (
	"fmt"
	"strconv"
	"strings"
)

// step is one step of a concrete location in a JSON document: an object key
// or an array index.
type step struct {
	key   string
	index int
	isIdx bool
}

// formatPath prints a concrete location JSONPath-style: $.a.b[2]['odd key'].
// Indices are kept, or replaced by [*] when generalise is set (signatures
// group "$.luck.pillars[3]" with "$.luck.pillars[4]").
func formatPath(steps []step, generalise bool) string {
	var b strings.Builder
	b.Grow(2 + 8*len(steps))
	b.WriteByte('$')
	for _, s := range steps {
		if s.isIdx {
			if generalise {
				b.WriteString("[*]")
				continue
			}
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
			continue
		}
		if plainKey(s.key) {
			b.WriteByte('.')
			b.WriteString(s.key)
			continue
		}
		b.WriteString("['")
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(s.key, `\`, `\\`), `'`, `\'`))
		b.WriteString("']")
	}
	return b.String()
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80) {
			return false
		}
	}
	return true
}

// segKind is the kind of one pattern segment.
type segKind uint8

const (
	segKey      segKind = iota // .name or ['name']
	segAnyKey                  // .*
	segIndex                   // [3]
	segAnyIndex                // [*]
	segDeep                    // .. (any number of steps, including none)
)

type seg struct {
	kind  segKind
	key   string
	index int
}

// Pattern is a compiled JSONPath-like pattern: "$.request_id", "$.a[*].b",
// "$.items[0]", "$['odd.key']", "$.*", "$..id" (any depth). A pattern matches
// a location exactly; rules on a location also cover everything below it.
type Pattern struct {
	src  string
	segs []seg
	deep bool // has a .. segment: matches locations of any depth
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// ParsePattern compiles a pattern. Errors name the pattern and the byte offset.
func ParsePattern(src string) (Pattern, error) {
	p := Pattern{src: src}
	s := strings.TrimSpace(src)
	if !strings.HasPrefix(s, "$") {
		return p, fmt.Errorf("path %q: must start with $ (e.g. $.request_id)", src)
	}
	i := 1
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], ".."):
			p.segs = append(p.segs, seg{kind: segDeep})
			p.deep = true
			i += 2
			if i < len(s) && s[i] == '[' {
				continue
			}
			name, n := readName(s[i:])
			if n == 0 {
				return p, fmt.Errorf("path %q: want a name after .. at byte %d", src, i)
			}
			p.segs = append(p.segs, nameSeg(name))
			i += n
		case s[i] == '.':
			i++
			name, n := readName(s[i:])
			if n == 0 {
				return p, fmt.Errorf("path %q: want a name after . at byte %d", src, i)
			}
			p.segs = append(p.segs, nameSeg(name))
			i += n
		case s[i] == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return p, fmt.Errorf("path %q: unclosed [ at byte %d", src, i)
			}
			inner := s[i+1 : i+end]
			switch {
			case inner == "*":
				p.segs = append(p.segs, seg{kind: segAnyIndex})
			case len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0]:
				k := inner[1 : len(inner)-1]
				k = strings.ReplaceAll(strings.ReplaceAll(k, `\'`, `'`), `\\`, `\`)
				p.segs = append(p.segs, seg{kind: segKey, key: k})
			default:
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 {
					return p, fmt.Errorf("path %q: [%s] at byte %d: want [*], [n] or ['name']", src, inner, i)
				}
				p.segs = append(p.segs, seg{kind: segIndex, index: n})
			}
			i += end + 1
		default:
			return p, fmt.Errorf("path %q: unexpected %q at byte %d", src, s[i], i)
		}
	}
	return p, nil
}

func nameSeg(name string) seg {
	if name == "*" {
		return seg{kind: segAnyKey}
	}
	return seg{kind: segKey, key: name}
}

func readName(s string) (string, int) {
	n := 0
	for n < len(s) && s[n] != '.' && s[n] != '[' {
		n++
	}
	return s[:n], n
}

// Match reports whether the pattern matches the location exactly.
func (p Pattern) match(steps []step) bool { return matchSegs(p.segs, steps) }

func matchSegs(segs []seg, steps []step) bool {
	for len(segs) > 0 {
		sg := segs[0]
		if sg.kind == segDeep {
			for k := 0; k <= len(steps); k++ {
				if matchSegs(segs[1:], steps[k:]) {
					return true
				}
			}
			return false
		}
		if len(steps) == 0 {
			return false
		}
		st := steps[0]
		switch sg.kind {
		case segKey:
			if st.isIdx || st.key != sg.key {
				return false
			}
		case segAnyKey:
			// "$.*" matches any key; it also matches an index, as in JSONPath.
		case segIndex:
			if !st.isIdx || st.index != sg.index {
				return false
			}
		case segAnyIndex:
			if !st.isIdx {
				return false
			}
		}
		segs, steps = segs[1:], steps[1:]
	}
	return len(steps) == 0
}

// patternSet is a list of patterns; matchAny is the hot-path query.
type patternSet []Pattern

func (ps patternSet) matchAny(steps []step) bool {
	for i := range ps {
		if !ps[i].deep && len(ps[i].segs) != len(steps) {
			continue // without .. a pattern names locations of its own depth only
		}
		if ps[i].match(steps) {
			return true
		}
	}
	return false
}

func parsePatterns(field string, srcs []string) (patternSet, error) {
	out := make(patternSet, 0, len(srcs))
	for _, s := range srcs {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out = append(out, p)
	}
	return out, nil
}
