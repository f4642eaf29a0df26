package comparator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"

	gojson "github.com/goccy/go-json"
	"github.com/google/go-cmp/cmp"

	"github.com/heal7/shadowcube/schemas"
)

// equal is the fast path: it walks both decoded documents under the rules
// and says whether go-cmp would find no difference. Most shadow pairs match,
// so the reflective go-cmp run (diffValues) happens only for the others; the
// fuzz test checks that both always agree.
func (e *engine) equal(a, b any) bool {
	var buf [16]step
	return e.walk(a, b, buf[:0])
}

func (e *engine) walk(a, b any, steps []step) bool {
	if e.ignore.matchAny(steps) {
		return true
	}
	if len(e.presence) > 0 && e.presence.matchAny(steps) {
		return present(a) == present(b)
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return false
		}
		for k, xv := range x {
			s := append(steps, step{key: k})
			yv, ok := y[k]
			if !ok {
				if !e.ignore.matchAny(s) {
					return false
				}
				continue
			}
			if !e.walk(xv, yv, s) {
				return false
			}
		}
		for k := range y {
			if _, ok := x[k]; !ok && !e.ignore.matchAny(append(steps, step{key: k})) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok {
			return false
		}
		if len(e.unordered) > 0 && e.unordered.matchAny(steps) {
			x, y = e.sorted(x), e.sorted(y)
		}
		if len(x) != len(y) {
			// go-cmp reports the surplus elements unless they are ignored.
			return e.surplusIgnored(x, y, steps)
		}
		for i := range x {
			if !e.walk(x[i], y[i], append(steps, step{index: i, isIdx: true})) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		if !ok {
			return false
		}
		return x == y || e.normOn && e.normalize(x) == e.normalize(y)
	case float64:
		y, ok := b.(float64)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		if tol, i := e.tolerance(steps); i >= 0 {
			return math.Abs(x-y) <= tol
		}
		return false
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	default:
		return reflect.DeepEqual(a, b)
	}
}

// surplusIgnored handles arrays of different lengths: they are equal only
// when every element is under an ignore rule (e.g. $.a[*]).
func (e *engine) surplusIgnored(x, y []any, steps []step) bool {
	n := max(len(x), len(y))
	for i := 0; i < n; i++ {
		if !e.ignore.matchAny(append(steps, step{index: i, isIdx: true})) {
			return false
		}
	}
	return true
}

func present(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// sorted returns a copy of an unordered array in a canonical order, so two
// permutations of the same multiset line up element by element.
func (e *engine) sorted(in []any) []any {
	if len(in) < 2 {
		return in
	}
	type kv struct {
		k string
		v any
	}
	tmp := make([]kv, len(in))
	var buf []byte
	for i, v := range in {
		buf = e.appendCanon(buf[:0], v)
		tmp[i] = kv{string(buf), v}
	}
	sort.SliceStable(tmp, func(i, j int) bool { return tmp[i].k < tmp[j].k })
	out := make([]any, len(in))
	for i := range tmp {
		out[i] = tmp[i].v
	}
	return out
}

// appendCanon writes v as canonical JSON (sorted keys, normalised strings).
func (e *engine) appendCanon(b []byte, v any) []byte {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, k)
			b = append(b, ':')
			b = e.appendCanon(b, x[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, v := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.appendCanon(b, v)
		}
		return append(b, ']')
	case string:
		return strconv.AppendQuote(b, e.normalize(x))
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(b, x)
	case nil:
		return append(b, "null"...)
	}
	return fmt.Appendf(b, "%v", v)
}

// cmpPathSteps converts a go-cmp path to JSON steps (type assertions and
// transforms are not locations in the document).
func cmpPathSteps(prefix []step, p cmp.Path) []step {
	out := make([]step, 0, len(prefix)+len(p))
	out = append(out, prefix...)
	for _, ps := range p {
		switch s := ps.(type) {
		case cmp.MapIndex:
			out = append(out, step{key: s.Key().String()})
		case cmp.SliceIndex:
			ix, iy := s.SplitKeys()
			if ix < 0 {
				ix = iy
			}
			out = append(out, step{index: ix, isIdx: true})
		}
	}
	return out
}

// cmpOptions builds the go-cmp options equivalent to walk. The filters are
// mutually exclusive (ignore > presence > the rest) so go-cmp never sees an
// ambiguous set of options.
func (e *engine) cmpOptions(prefix []step) cmp.Options {
	ign := func(p cmp.Path) bool { return e.ignore.matchAny(cmpPathSteps(prefix, p)) }
	pres := func(p cmp.Path) bool {
		st := cmpPathSteps(prefix, p)
		return !e.ignore.matchAny(st) && e.presence.matchAny(st)
	}
	rest := func(p cmp.Path) (st []step, ok bool) {
		st = cmpPathSteps(prefix, p)
		return st, !e.ignore.matchAny(st) && !e.presence.matchAny(st)
	}
	opts := cmp.Options{
		cmp.FilterPath(ign, cmp.Ignore()),
	}
	if len(e.presence) > 0 {
		opts = append(opts, cmp.FilterPath(pres, cmp.Comparer(func(x, y any) bool { return present(x) == present(y) })))
	}
	for i := range e.tol {
		i, tol := i, e.tol[i].tol
		opts = append(opts, cmp.FilterPath(func(p cmp.Path) bool {
			st, ok := rest(p)
			if !ok {
				return false
			}
			_, first := e.tolerance(st)
			return first == i
		}, cmp.Comparer(func(x, y float64) bool { return x == y || math.Abs(x-y) <= tol })))
	}
	if e.normOn {
		opts = append(opts, cmp.FilterPath(func(p cmp.Path) bool { _, ok := rest(p); return ok },
			cmp.Comparer(func(x, y string) bool { return x == y || e.normalize(x) == e.normalize(y) })))
	}
	if len(e.unordered) > 0 {
		opts = append(opts, cmp.FilterPath(func(p cmp.Path) bool {
			st, ok := rest(p)
			return ok && e.unordered.matchAny(st)
		}, cmp.Transformer("unordered", func(in []any) []any { return e.sorted(in) })))
	}
	return opts
}

// diffReporter collects the unequal leaves go-cmp reports.
type diffReporter struct {
	prefix []step
	path   cmp.Path
	diffs  []rawDiff
}

type rawDiff struct {
	steps  []step
	kind   schemas.DiffKind
	legacy any
	cube   any
	inArr  bool // the last step is an array element
}

func (r *diffReporter) PushStep(ps cmp.PathStep) { r.path = append(r.path, ps) }
func (r *diffReporter) PopStep()                 { r.path = r.path[:len(r.path)-1] }
func (r *diffReporter) Report(rs cmp.Result) {
	if rs.Equal() || rs.ByIgnore() {
		return
	}
	last := r.path.Last()
	vx, vy := last.Values()
	d := rawDiff{steps: cmpPathSteps(r.prefix, r.path)}
	_, d.inArr = last.(cmp.SliceIndex)
	switch {
	case !vx.IsValid() && !vy.IsValid():
		return
	case !vx.IsValid():
		d.kind, d.cube = schemas.DiffExtra, valueOf(vy)
	case !vy.IsValid():
		d.kind, d.legacy = schemas.DiffMissing, valueOf(vx)
	default:
		d.legacy, d.cube = valueOf(vx), valueOf(vy)
		if jsonType(d.legacy) != jsonType(d.cube) {
			d.kind = schemas.DiffType
		} else {
			d.kind = schemas.DiffChanged
		}
	}
	r.diffs = append(r.diffs, d)
}

func valueOf(v reflect.Value) any {
	if !v.IsValid() || !v.CanInterface() {
		return nil
	}
	return v.Interface()
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// diffValues runs go-cmp under the rules and returns the differences,
// sorted by path. Element differences of an array that holds the same
// elements in another order collapse into one "order" diff at the array.
// When both documents are objects, go-cmp runs only on the members the fast
// path finds different: a few fields of a large answer usually differ.
func (e *engine) diffValues(a, b any) (diffs []schemas.Diff, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compare: go-cmp: %v", r)
		}
	}()
	rep := &diffReporter{}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok || e.ignore.matchAny(nil) || e.presence.matchAny(nil) {
		cmp.Equal(a, b, append(e.cmpOptions(nil), cmp.Reporter(rep))...)
	} else {
		keys := make([]string, 0, len(am)+len(bm))
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			prefix := []step{{key: k}}
			if e.ignore.matchAny(prefix) {
				continue
			}
			av, ina := am[k]
			bv, inb := bm[k]
			switch {
			case !inb:
				rep.diffs = append(rep.diffs, rawDiff{steps: prefix, kind: schemas.DiffMissing, legacy: av})
			case !ina:
				rep.diffs = append(rep.diffs, rawDiff{steps: prefix, kind: schemas.DiffExtra, cube: bv})
			case e.walk(av, bv, prefix):
			case jsonType(av) != jsonType(bv):
				// go-cmp cannot start from a nil interface; the kind is plain.
				rep.diffs = append(rep.diffs, rawDiff{steps: prefix, kind: schemas.DiffType, legacy: av, cube: bv})
			default:
				rep.prefix, rep.path = prefix, nil
				cmp.Equal(av, bv, append(e.cmpOptions(prefix), cmp.Reporter(rep))...)
			}
		}
	}
	// Collapse pure re-orderings.
	done := map[string]bool{}
	for _, d := range rep.diffs {
		if d.inArr && len(d.steps) > 0 {
			parent := d.steps[:len(d.steps)-1]
			ps := formatPath(parent, false)
			if isOrder, seen := done[ps]; seen {
				if isOrder {
					continue
				}
			} else {
				xa, _ := lookup(a, parent).([]any)
				ya, _ := lookup(b, parent).([]any)
				order := xa != nil && ya != nil && len(xa) == len(ya) && e.walkSorted(xa, ya, parent)
				done[ps] = order
				if order {
					diffs = append(diffs, schemas.Diff{Path: ps, Kind: schemas.DiffOrder, Legacy: mustJSON(xa), Cube: mustJSON(ya)})
					continue
				}
			}
		}
		diffs = append(diffs, schemas.Diff{Path: formatPath(d.steps, false), Kind: d.kind, Legacy: rawIf(d.kind != schemas.DiffExtra, d.legacy), Cube: rawIf(d.kind != schemas.DiffMissing, d.cube)})
	}
	sort.SliceStable(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs, nil
}

// walkSorted says whether two arrays hold the same elements in some order.
func (e *engine) walkSorted(x, y []any, steps []step) bool {
	x, y = e.sorted(x), e.sorted(y)
	for i := range x {
		if !e.walk(x[i], y[i], append(steps[:len(steps):len(steps)], step{index: i, isIdx: true})) {
			return false
		}
	}
	return true
}

func lookup(v any, steps []step) any {
	for _, s := range steps {
		switch x := v.(type) {
		case map[string]any:
			if s.isIdx {
				return nil
			}
			v = x[s.key]
		case []any:
			if !s.isIdx || s.index >= len(x) {
				return nil
			}
			v = x[s.index]
		default:
			return nil
		}
	}
	return v
}

func rawIf(ok bool, v any) schemas.RawJSON {
	if !ok {
		return nil
	}
	return mustJSON(v)
}

func mustJSON(v any) schemas.RawJSON {
	b, err := json.Marshal(v)
	if err != nil {
		return schemas.RawJSON(strconv.Quote(fmt.Sprint(v)))
	}
	return b
}

// maxBodyInDiff caps how much of a non-JSON body a diff carries.
const maxBodyInDiff = 512

// compareResponses compares two HTTP answers: status, selected headers and
// the bodies (JSON under the rules, anything else byte for byte). It returns
// the decoded bodies for the domain comparisons (nil when not JSON); a saju
// route's bodies are normalised (normalizeSaju) before they are compared.
func (e *engine) compareResponses(legacy, cube *schemas.HTTPResponse) (diffs []schemas.Diff, lv, cv any, err error) {
	if legacy.Status != cube.Status {
		diffs = append(diffs, schemas.Diff{Path: "status", Kind: schemas.DiffChanged,
			Legacy: schemas.RawJSON(strconv.Itoa(legacy.Status)), Cube: schemas.RawJSON(strconv.Itoa(cube.Status))})
	}
	for _, h := range e.headers {
		lh, ch := legacy.Headers.Values(h), cube.Headers.Values(h)
		switch {
		case len(lh) == 0 && len(ch) == 0:
		case len(ch) == 0:
			diffs = append(diffs, schemas.Diff{Path: "header." + h, Kind: schemas.DiffMissing, Legacy: mustJSON(lh)})
		case len(lh) == 0:
			diffs = append(diffs, schemas.Diff{Path: "header." + h, Kind: schemas.DiffExtra, Cube: mustJSON(ch)})
		default:
			if !sameStrings(lh, ch, e) {
				diffs = append(diffs, schemas.Diff{Path: "header." + h, Kind: schemas.DiffChanged, Legacy: mustJSON(lh), Cube: mustJSON(ch)})
			}
		}
	}
	if bytes.Equal(legacy.Body, cube.Body) {
		// Fast path: the same bytes decode, normalise and walk the same way,
		// so the bodies cannot differ under any rule. Only an AI route reads
		// the decoded answer (labels, scores): one decode serves both sides.
		if e.kind == KindAI && decodeBody(legacy.Body, &lv) {
			cv = lv
		} else {
			lv = nil
		}
		return diffs, lv, cv, nil
	}
	if e.tapeEqual(legacy.Body, cube.Body) {
		// Proven equal under the rules without decoding (fastequal.go);
		// as for identical bytes, no decoded documents come back.
		return diffs, nil, nil, nil
	}
	lok, cok := decodeBody(legacy.Body, &lv), decodeBody(cube.Body, &cv)
	switch {
	case lok && cok:
		if e.kind == KindSaju {
			normalizeSaju(lv)
			normalizeSaju(cv)
		}
		if !e.equal(lv, cv) {
			d, err := e.diffValues(lv, cv)
			if err != nil {
				return nil, lv, cv, err
			}
			diffs = append(diffs, d...)
		}
	case bytes.Equal(legacy.Body, cube.Body):
	default:
		kind := schemas.DiffChanged
		if lok != cok {
			kind = schemas.DiffType
		}
		diffs = append(diffs, schemas.Diff{Path: "body", Kind: kind, Legacy: bodyJSON(legacy.Body), Cube: bodyJSON(cube.Body)})
	}
	if !lok {
		lv = nil
	}
	if !cok {
		cv = nil
	}
	return diffs, lv, cv, nil
}

func sameStrings(a, b []string, e *engine) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && e.normalize(a[i]) != e.normalize(b[i]) {
			return false
		}
	}
	return true
}

func decodeBody(b []byte, into *any) bool {
	if len(bytes.TrimSpace(b)) == 0 {
		return false
	}
	// goccy/go-json first (about three times faster into any;
	// FuzzDecodeBodyAgree holds it to encoding/json's results); a body it
	// rejects gets encoding/json's verdict.
	if gojson.Unmarshal(b, into) == nil {
		return true
	}
	*into = nil
	return json.Unmarshal(b, into) == nil
}

func bodyJSON(b []byte) schemas.RawJSON {
	if len(b) > maxBodyInDiff {
		b = b[:maxBodyInDiff]
	}
	return mustJSON(string(bytes.ToValidUTF8(b, []byte("\uFFFD"))))
}
