package analyst

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/schemas"
)

// Answer is one side of an example: status, kept headers, body.
type Answer struct {
	Status    int                 `json:"status"`
	Headers   map[string][]string `json:"headers,omitempty"`
	Body      string              `json:"body"`
	Truncated bool                `json:"truncated,omitempty"`
	Error     string              `json:"error,omitempty"`
	// Lines is the body pretty-printed (JSON: one value per line with its
	// path), each line marked when it lies inside a differing path.
	Lines []Line `json:"-"`
}

// Line is one line of a pretty-printed body.
type Line struct {
	Text string
	Path string
	Diff bool
}

// Example is one kept pair of a signature: the request and both answers.
type Example struct {
	RequestID  string         `json:"request_id"`
	ReplayedAt time.Time      `json:"replayed_at"`
	ComparedAt time.Time      `json:"compared_at"`
	Method     string         `json:"method"`
	Route      string         `json:"route"`
	Path       string         `json:"path"`
	Request    string         `json:"request_body"`
	Truncated  bool           `json:"request_truncated,omitempty"`
	Diffs      []schemas.Diff `json:"diffs"`
	DiffPaths  []string       `json:"diff_paths"`
	Legacy     Answer         `json:"legacy"`
	Cube       Answer         `json:"cube"`
}

// bodyText shows a body as text: a body cut at the cap inside a
// character loses that character; anything else not UTF-8 is summarised.
func bodyText(b []byte) string {
	for cut := 0; cut < utf8.UTFMax && cut <= len(b); cut++ {
		if utf8.Valid(b[:len(b)-cut]) {
			return string(b[:len(b)-cut])
		}
	}
	return fmt.Sprintf("(%d bytes, not UTF-8)", len(b))
}

func readExamples(ctx context.Context, st *comparator.Store, sigs []string, limit int) (map[string][]Example, error) {
	out := map[string][]Example{}
	if len(sigs) == 0 || limit < 0 {
		return out, nil
	}
	if limit == 0 {
		limit = 1 << 20
	}
	rows, err := st.Pool().Query(ctx, st.SQL(`SELECT signature, request_id, replayed_at, compared_at, route, coalesce(method, ''), coalesce(request_path, ''),
		coalesce(request_body, ''), request_truncated, diffs,
		coalesce(legacy_status, 0), legacy_headers, coalesce(legacy_body, ''), legacy_truncated,
		coalesce(cube_status, 0), cube_headers, coalesce(cube_body, ''), cube_truncated, coalesce(cube_error, '')
		FROM {s}.examples WHERE signature = ANY($1) AND slot <= $2 ORDER BY signature, slot`), sigs, limit)
	if err != nil {
		return nil, fmt.Errorf("report: read examples: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sig string
		var e Example
		var req, diffs, lb, cb []byte
		if err := rows.Scan(&sig, &e.RequestID, &e.ReplayedAt, &e.ComparedAt, &e.Route, &e.Method, &e.Path, &req, &e.Truncated, &diffs,
			&e.Legacy.Status, &e.Legacy.Headers, &lb, &e.Legacy.Truncated,
			&e.Cube.Status, &e.Cube.Headers, &cb, &e.Cube.Truncated, &e.Cube.Error); err != nil {
			return nil, fmt.Errorf("report: read examples: %w", err)
		}
		if err := json.Unmarshal(diffs, &e.Diffs); err != nil {
			return nil, fmt.Errorf("report: example %s: diffs: %w", e.RequestID, err)
		}
		e.Request, e.Legacy.Body, e.Cube.Body = bodyText(req), bodyText(lb), bodyText(cb)
		seen := map[string]bool{}
		for _, d := range e.Diffs {
			if !seen[d.Path] {
				seen[d.Path] = true
				e.DiffPaths = append(e.DiffPaths, d.Path)
			}
		}
		sort.Strings(e.DiffPaths)
		e.Legacy.Lines = bodyLines(lb, e.DiffPaths)
		e.Cube.Lines = bodyLines(cb, e.DiffPaths)
		out[sig] = append(out[sig], e)
	}
	return out, rows.Err()
}

// bodyLines pretty-prints a body for the side-by-side view. A JSON body
// gets one line per scalar (and per opening/closing bracket), each with
// its path in the comparator's notation ($.a.b[2]); a line is marked when
// its path is a differing path or lies under one. Any other body is shown
// as is, marked whole when "body" differs.
func bodyLines(b []byte, diffPaths []string) []Line {
	differs := func(p string) bool {
		g := generalise(p)
		for _, d := range diffPaths {
			for _, c := range []string{p, g} {
				if c == d || strings.HasPrefix(c, d+".") || strings.HasPrefix(c, d+"[") {
					return true
				}
			}
		}
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if len(bytes.TrimSpace(b)) == 0 || dec.Decode(&v) != nil || dec.More() {
		whole := false
		for _, d := range diffPaths {
			if d == "body" {
				whole = true
			}
		}
		var out []Line
		for _, l := range strings.Split(bodyText(b), "\n") {
			out = append(out, Line{Text: l, Path: "body", Diff: whole})
		}
		return out
	}
	var out []Line
	var walk func(v any, path, prefix string, indent int, last bool)
	walk = func(v any, path, prefix string, indent int, last bool) {
		pad := strings.Repeat("  ", indent)
		comma := ","
		if last {
			comma = ""
		}
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out = append(out, Line{Text: pad + prefix + "{}" + comma, Path: path, Diff: differs(path)})
				return
			}
			out = append(out, Line{Text: pad + prefix + "{", Path: path, Diff: differs(path)})
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for i, k := range keys {
				kj, _ := json.Marshal(k)
				walk(x[k], childPath(path, k), string(kj)+": ", indent+1, i == len(keys)-1)
			}
			out = append(out, Line{Text: pad + "}" + comma, Path: path, Diff: differs(path)})
		case []any:
			if len(x) == 0 {
				out = append(out, Line{Text: pad + prefix + "[]" + comma, Path: path, Diff: differs(path)})
				return
			}
			out = append(out, Line{Text: pad + prefix + "[", Path: path, Diff: differs(path)})
			for i, e := range x {
				walk(e, path+"["+strconv.Itoa(i)+"]", "", indent+1, i == len(x)-1)
			}
			out = append(out, Line{Text: pad + "]" + comma, Path: path, Diff: differs(path)})
		default:
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(x)
			out = append(out, Line{Text: pad + prefix + strings.TrimSuffix(buf.String(), "\n") + comma, Path: path, Diff: differs(path)})
		}
	}
	walk(v, "$", "", 0, true)
	return out
}

// childPath appends a key as the comparator formats paths
// (comparator/path.go: formatPath, plainKey).
func childPath(path, key string) string {
	plain := key != ""
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80) {
			plain = false
			break
		}
	}
	if plain {
		return path + "." + key
	}
	return path + "['" + strings.ReplaceAll(strings.ReplaceAll(key, `\`, `\\`), `'`, `\'`) + "']"
}

// generalise replaces array indices by [*], as signatures do.
func generalise(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '[' {
			j := i + 1
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(p) && p[j] == ']' {
				b.WriteString("[*]")
				i = j
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
