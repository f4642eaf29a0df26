package comparator

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// fullEqual is the full path's verdict on two bodies: decode, normalise,
// walk (what compareResponses does when the tape walk does not prove
// equality). ok is false when either body is not JSON.
func fullEqual(e *engine, a, b []byte) (eq, ok bool) {
	var x, y any
	if !decodeBody(a, &x) || !decodeBody(b, &y) {
		return false, false
	}
	if e.kind == KindSaju {
		normalizeSaju(x)
		normalizeSaju(y)
	}
	return e.equal(x, y), true
}

// FuzzTapeEqualSound: whenever the tape walk proves two bodies equal, the
// full path finds them equal too, under every fuzz rule set.
func FuzzTapeEqualSound(f *testing.F) {
	l, c := benchDocs(false)
	lx, cx := benchDocs(true)
	seeds := [][2]string{
		{l, c}, {lx, cx}, {l, l},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`{"elements":{"木":1,"wood":2}}`, `{"elements":{"wood":2}}`},
		{`{"elements":{"木":1}}`, `{"elements":{"목":1}}`},
		{`{"n":1.0,"x":[1e0,-0]}`, `{"x":[1,0],"n":1}`},
		{`{"s":"\uac11\uc790"}`, `{"s":"갑자"}`},
		{"{\"s\":\"\xff\"}", "{\"s\":\"\ufffd\"}"},
		{`{"big":1e400}`, `{"big":1e400}`},
		{`{"pillars":{"day":" 경자 "}}`, `{"pillars":{"day":"庚子"}}`},
		{`{"ten_gods":{"y":" 偏印"}}`, `{"ten_gods":{"y":"편인"}}`},
		{`{"luck":{"direction":" Forward","pillars":["을묘"]}}`, `{"luck":{"pillars":["乙卯"],"direction":"forward"}}`},
		{`{"b":[1,2,3]}`, `{"b":[3,2,1]}`},
		{`{"b":[{"id":1,"c":2}]}`, `{"b":[{"id":9,"c":3}]}`},
		{`[1,`, `[1]`},
		{`{"text":" Hi "}`, `{"text":"hi"}`},
	}
	for i, s := range seeds {
		for pick := range fuzzRuleSets {
			f.Add([]byte(s[0]), []byte(s[1]), uint8(i+pick))
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte, pick uint8) {
		e, err := compile(fuzzRuleSets[int(pick)%len(fuzzRuleSets)])
		if err != nil {
			t.Fatal(err)
		}
		if !e.tapeEqual(a, b) {
			return
		}
		eq, ok := fullEqual(e, a, b)
		if !ok || !eq {
			t.Fatalf("tape walk proves equal, full path says equal=%v decoded=%v (kind %s)\nlegacy %q\ncube   %q", eq, ok, e.kind, a, b)
		}
	})
}

// jv is a generated JSON value; the property test prints it two ways.
type jv struct {
	kind byte // o a s n t f z
	s    string
	num  float64
	arr  []jv
	obj  []jkv
	// class: for strings and keys that saju normalises, the spellings
	// that mean the same (index 0 is s).
	class []string
}

type jkv struct {
	key      string
	keyClass []string
	val      jv
}

// Spellings normalizeSaju treats as the same, per field.
var (
	ganjiClasses   = [][]string{{"庚子", "경자", " 庚子 "}, {"甲寅", "갑인"}, {"戊辰", "무진 "}, {"辛丑", "신축"}}
	stemClasses    = [][]string{{"庚", "경"}, {"辛", "신", " 辛 "}}
	elemClasses    = [][]string{{"metal", "金", "금", " Metal "}, {"wood", "木", "목"}}
	yinYangClasses = [][]string{{"yang", "陽", "양", "YANG"}, {"yin", "陰", "음"}}
	tenGodClasses  = [][]string{{"편인", "偏印", " 편인 "}, {"겁재", "劫財", "劫财"}}
	dirClasses     = [][]string{{"forward", " Forward ", "FORWARD"}, {"backward", "Backward"}}
	luckClasses    = [][]string{{"乙卯", "을묘"}, {"丙辰", "병진"}}
	elemKeyClasses = [][]string{{"wood", "木", "목"}, {"fire", "火", "화"}, {"earth", "土", "토"}, {"metal", "金", "금"}, {"water", "水", "수"}}
	plainStrings   = []string{"", "a", "b", "편인", "x y", `q"uote`, "back\\slash", "tab\tline\n", "é", "😀"}
	plainKeys      = []string{"a", "b", "c", "id", "request_id", "x", "tags", "text", "n"}
)

func genClass(t *rapid.T, classes [][]string, label string) jv {
	c := classes[rapid.IntRange(0, len(classes)-1).Draw(t, label)]
	return jv{kind: 's', s: c[0], class: c}
}

func genScalar(t *rapid.T, label string) jv {
	switch rapid.IntRange(0, 5).Draw(t, label+"kind") {
	case 0:
		return jv{kind: 's', s: rapid.SampledFrom(plainStrings).Draw(t, label+"s")}
	case 1:
		return jv{kind: 'n', num: float64(rapid.IntRange(-3, 3).Draw(t, label+"n")) / 2}
	case 2:
		return jv{kind: 't'}
	case 3:
		return jv{kind: 'f'}
	case 4:
		return jv{kind: 'z'}
	default:
		return jv{kind: 'n', num: float64(rapid.IntRange(0, 100).Draw(t, label+"i"))}
	}
}

func genValue(t *rapid.T, depth int, label string) jv {
	if depth <= 0 || rapid.IntRange(0, 2).Draw(t, label+"leaf") == 0 {
		return genScalar(t, label)
	}
	if rapid.Bool().Draw(t, label+"isArr") {
		n := rapid.IntRange(0, 3).Draw(t, label+"len")
		v := jv{kind: 'a'}
		for i := range n {
			v.arr = append(v.arr, genValue(t, depth-1, fmt.Sprintf("%s[%d]", label, i)))
		}
		return v
	}
	keys := rapid.SliceOfNDistinct(rapid.SampledFrom(plainKeys), 0, 4, rapid.ID[string]).Draw(t, label+"keys")
	v := jv{kind: 'o'}
	for _, k := range keys {
		v.obj = append(v.obj, jkv{key: k, val: genValue(t, depth-1, label+"."+k)})
	}
	return v
}

// genSaju draws a saju-shaped answer (some fields left out, plain extra
// fields in), with unique keys after normalisation.
func genSaju(t *rapid.T) jv {
	doc := jv{kind: 'o'}
	add := func(k string, v jv) {
		if rapid.IntRange(0, 5).Draw(t, "omit "+k) > 0 {
			doc.obj = append(doc.obj, jkv{key: k, val: v})
		}
	}
	add("id", jv{kind: 'n', num: float64(rapid.IntRange(1, 9).Draw(t, "id"))})
	add("request_id", jv{kind: 's', s: rapid.SampledFrom([]string{"r1", "r2"}).Draw(t, "rid")})
	pillars := jv{kind: 'o'}
	for _, k := range []string{"year", "month", "day", "hour"} {
		pillars.obj = append(pillars.obj, jkv{key: k, val: genClass(t, ganjiClasses, "pillar "+k)})
	}
	add("pillars", pillars)
	add("day_master", jv{kind: 'o', obj: []jkv{
		{key: "stem", val: genClass(t, stemClasses, "stem")},
		{key: "element", val: genClass(t, elemClasses, "element")},
		{key: "yin_yang", val: genClass(t, yinYangClasses, "yinyang")},
	}})
	elems := jv{kind: 'o'}
	for _, i := range rapid.SliceOfNDistinct(rapid.IntRange(0, len(elemKeyClasses)-1), 0, 5, rapid.ID[int]).Draw(t, "elements") {
		c := elemKeyClasses[i]
		elems.obj = append(elems.obj, jkv{key: c[0], keyClass: c, val: jv{kind: 'n', num: float64(i)}})
	}
	add("elements", elems)
	add("ten_gods", jv{kind: 'o', obj: []jkv{{key: "year", val: genClass(t, tenGodClasses, "tg year")}, {key: "hour", val: genClass(t, tenGodClasses, "tg hour")}}})
	luck := jv{kind: 'o', obj: []jkv{{key: "direction", val: genClass(t, dirClasses, "direction")}, {key: "start_age", val: jv{kind: 'n', num: 7}}}}
	lp := jv{kind: 'a'}
	for i := range rapid.IntRange(0, 3).Draw(t, "luck len") {
		lp.arr = append(lp.arr, genClass(t, luckClasses, fmt.Sprintf("luck %d", i)))
	}
	luck.obj = append(luck.obj, jkv{key: "pillars", val: lp})
	add("luck", luck)
	add("extra", genValue(t, 2, "extra"))
	return doc
}

// printer writes a jv with one of the spellings that mean the same: member
// order, spelling within a class, escapes, number form and white space.
type printer struct {
	t    *rapid.T
	vary bool // false: the canonical form
	b    strings.Builder
	n    int
}

func (p *printer) draw(max int) int {
	if !p.vary {
		return 0
	}
	p.n++
	return rapid.IntRange(0, max).Draw(p.t, fmt.Sprintf("print %d", p.n))
}

func (p *printer) ws() {
	p.b.WriteString([]string{"", " ", "\n\t", "\r\n "}[p.draw(3)])
}

func (p *printer) str(s string) {
	escape := p.draw(2) == 2
	p.b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			p.b.WriteByte('\\')
			p.b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&p.b, `\u%04x`, r)
		case escape && r >= utf8.RuneSelf:
			for _, u := range utf16Units(r) {
				fmt.Fprintf(&p.b, `\u%04x`, u)
			}
		case escape && r == '/':
			p.b.WriteString(`\/`)
		default:
			p.b.WriteRune(r)
		}
	}
	p.b.WriteByte('"')
}

func utf16Units(r rune) []rune {
	if r < 0x10000 {
		return []rune{r}
	}
	r -= 0x10000
	return []rune{0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff}
}

func (p *printer) num(f float64) {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	switch p.draw(3) {
	case 1:
		if f == float64(int64(f)) {
			s += ".0"
		}
	case 2:
		s = strconv.FormatFloat(f, 'e', -1, 64)
	case 3:
		if f == 0 {
			s = "-0"
		}
	}
	p.b.WriteString(s)
}

func (p *printer) value(v jv) {
	p.ws()
	switch v.kind {
	case 'o':
		order := make([]int, len(v.obj))
		for i := range order {
			order[i] = i
		}
		if p.vary {
			for i := len(order) - 1; i > 0; i-- {
				j := p.draw(i)
				order[i], order[j] = order[j], order[i]
			}
		}
		p.b.WriteByte('{')
		for i, k := range order {
			if i > 0 {
				p.b.WriteByte(',')
			}
			m := v.obj[k]
			p.ws()
			key := m.key
			if len(m.keyClass) > 0 {
				key = m.keyClass[p.draw(len(m.keyClass)-1)]
			}
			p.str(key)
			p.ws()
			p.b.WriteByte(':')
			p.value(m.val)
		}
		p.ws()
		p.b.WriteByte('}')
	case 'a':
		p.b.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				p.b.WriteByte(',')
			}
			p.value(e)
		}
		p.ws()
		p.b.WriteByte(']')
	case 's':
		s := v.s
		if len(v.class) > 0 {
			s = v.class[p.draw(len(v.class)-1)]
		}
		p.str(s)
	case 'n':
		p.num(v.num)
	case 't':
		p.b.WriteString("true")
	case 'f':
		p.b.WriteString("false")
	case 'z':
		p.b.WriteString("null")
	}
	p.ws()
}

func printDoc(t *rapid.T, v jv, vary bool) []byte {
	p := &printer{t: t, vary: vary}
	p.value(v)
	return []byte(p.b.String())
}

// mutate changes one thing in v (a value, a key, an element), so the two
// documents may or may not still be equal under the rules.
func mutate(t *rapid.T, v jv, label string) jv {
	switch v.kind {
	case 'o':
		if len(v.obj) == 0 || rapid.IntRange(0, 4).Draw(t, label+"here") == 0 {
			out := v
			out.obj = append([]jkv(nil), v.obj...)
			if len(out.obj) > 0 && rapid.Bool().Draw(t, label+"drop") {
				i := rapid.IntRange(0, len(out.obj)-1).Draw(t, label+"drop i")
				out.obj = append(out.obj[:i], out.obj[i+1:]...)
			} else {
				// possibly a duplicate key, or one that collides after
				// normalisation
				out.obj = append(out.obj, jkv{key: rapid.SampledFrom(append(plainKeys, "木", "wood", "목", "year")).Draw(t, label+"add"), val: genScalar(t, label+"new")})
			}
			return out
		}
		out := v
		out.obj = append([]jkv(nil), v.obj...)
		i := rapid.IntRange(0, len(out.obj)-1).Draw(t, label+"member")
		out.obj[i].val = mutate(t, out.obj[i].val, label+"."+out.obj[i].key)
		return out
	case 'a':
		out := v
		out.arr = append([]jv(nil), v.arr...)
		if len(out.arr) == 0 || rapid.IntRange(0, 3).Draw(t, label+"grow") == 0 {
			out.arr = append(out.arr, genScalar(t, label+"elem"))
			return out
		}
		i := rapid.IntRange(0, len(out.arr)-1).Draw(t, label+"elem i")
		out.arr[i] = mutate(t, out.arr[i], fmt.Sprintf("%s[%d]", label, i))
		return out
	default:
		n := genScalar(t, label+"repl")
		if v.kind == 's' && rapid.Bool().Draw(t, label+"cls") {
			n = v
			n.s, n.class = " "+v.s, nil // differs unless trimmed by a rule
		}
		return n
	}
}

// TestTapeEqualProperty draws saju answers and JSON documents, prints each
// twice (member order, escapes, number forms, white space and the saju
// spellings varying), sometimes changes one thing, and checks the tape walk
// against the full path: it never proves equal what the full path finds
// different, and it proves every pair that differs only in spelling.
func TestTapeEqualProperty(t *testing.T) {
	engines := map[string]*engine{}
	for name, r := range map[string]Rules{
		"saju":        {Kind: KindSaju, Ignore: []string{"$.request_id", "$.id"}},
		"json":        {Ignore: []string{"$.a", "$..id"}, Tolerance: map[string]float64{"$..n": 0.5}},
		"json-norm":   {Normalize: StringNorm{Trim: true, FoldCase: true}},
		"saju-ignore": {Kind: KindSaju, Ignore: []string{"$.luck.pillars[*]", "$.extra"}},
	} {
		e, err := compile(r)
		if err != nil {
			t.Fatal(err)
		}
		engines[name] = e
	}
	var proven, spelled int
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.SampledFrom([]string{"saju", "json", "json-norm", "saju-ignore"}).Draw(t, "engine")
		e := engines[name]
		var doc jv
		if e.kind == KindSaju && rapid.IntRange(0, 3).Draw(t, "shape") > 0 {
			doc = genSaju(t)
		} else {
			doc = genValue(t, 3, "$")
		}
		other, changed := doc, false
		if rapid.IntRange(0, 2).Draw(t, "mutate") == 0 {
			other, changed = mutate(t, doc, "$"), true
		}
		a, b := printDoc(t, doc, true), printDoc(t, other, true)
		got := e.tapeEqual(a, b)
		full, ok := fullEqual(e, a, b)
		if !ok {
			t.Fatalf("generated bodies are not JSON:\n%s\n%s", a, b)
		}
		if got && !full {
			t.Fatalf("%s: tape walk proves equal, full path finds a difference\nlegacy %s\ncube   %s", name, a, b)
		}
		if got {
			proven++
		}
		// Only spelling varies: the full path finds them equal (saju
		// spellings count only on saju routes), and so must the tape walk.
		if !changed && (e.kind == KindSaju || sameCanon(t, doc)) {
			spelled++
			if !full {
				t.Fatalf("%s: the full path finds two spellings of one document different\n%s\n%s", name, a, b)
			}
			if !got {
				t.Fatalf("%s: the tape walk does not prove two spellings of one document equal\nlegacy %s\ncube   %s", name, a, b)
			}
		}
	})
	t.Logf("proven %d, spelled %d", proven, spelled)
	if proven == 0 || spelled == 0 {
		t.Fatalf("the property never exercised the tape walk (proven %d, spelled %d)", proven, spelled)
	}
}

// sameCanon reports whether doc has no saju spelling classes (outside a
// saju route they are different strings).
func sameCanon(_ *rapid.T, doc jv) bool {
	if len(doc.class) > 1 {
		return false
	}
	for _, m := range doc.obj {
		if len(m.keyClass) > 1 || !sameCanon(nil, m.val) {
			return false
		}
	}
	for _, e := range doc.arr {
		if !sameCanon(nil, e) {
			return false
		}
	}
	return true
}

// TestTapeEqualSkipsDecoding: a saju pair that differs only in spelling is
// judged a match, and the tape walk is what judged it (no decode).
func TestTapeEqualSkipsDecoding(t *testing.T) {
	c, err := New(Config{Routes: []RouteRules{{Service: "saju", Route: sajuRoute, Rules: Rules{Kind: KindSaju, Ignore: []string{"$.request_id"}}}}, RepeatCache: -1})
	if err != nil {
		t.Fatal(err)
	}
	l, cube := benchDocs(false)
	e := c.engineFor("saju", sajuRoute)
	if !e.tapeEqual([]byte(l), []byte(cube)) {
		t.Fatal("the bench's Hanja and Hangul answers are not proven equal by the tape walk")
	}
	req := birth("1988-02-15", "23:40", "solar")
	if o := c.Compare(result("saju", sajuRoute, req, l, cube)); o.Verdict != VerdictMatch {
		t.Fatalf("verdict %s, diffs %+v", o.Verdict, o.Diffs)
	}
	// Without the pool (the race detector makes sync.Pool drop items).
	lb, cb := []byte(l), []byte(cube)
	var ta, tb tape
	allocs := testing.AllocsPerRun(100, func() {
		if !e.tapeEqualOn(&ta, &tb, lb, cb) {
			t.Fatal("not proven equal")
		}
	})
	if allocs > 0 {
		t.Fatalf("tape walk allocates %.0f times per pair", allocs)
	}
	lx, cx := benchDocs(true)
	if e.tapeEqual([]byte(lx), []byte(cx)) {
		t.Fatal("the zi-hour divergence is proven equal")
	}
	if o := c.Compare(result("saju", sajuRoute, req, lx, cx)); o.Verdict != VerdictMismatch || o.Causes[0] != CauseZiHour {
		t.Fatalf("mismatch pair: verdict %s, causes %v", o.Verdict, o.Causes)
	}
}

// TestControlOrWideExhaustive: every byte value at every position of a
// segment longer than one word.
func TestControlOrWideExhaustive(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 19; pos++ {
			seg := []byte("abcdefghijklmnopqrs")
			seg[pos] = byte(c)
			var wide bool
			got := controlOrWide(seg, &wide)
			if got != (c < 0x20) || wide != (c >= 0x80) {
				t.Fatalf("byte %#x at %d: control %v wide %v", c, pos, got, wide)
			}
		}
	}
}
