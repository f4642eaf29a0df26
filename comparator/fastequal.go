package comparator

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// The tape path: most shadow pairs match, and decoding both answers into
// maps (compareResponses' decodeBody) was most of a comparison's cost. Two
// bodies are first parsed into flat tapes (one node per value, buffers
// pooled: no allocation per document) and walked together under the same
// rules as engine.walk, with the saju normalisation applied on the way.
// When the walk proves the bodies equal, no decode happens. Anything the
// tape walk does not handle exactly as decode + normalise + walk would
// (unordered rules, duplicate keys, very large objects,
// invalid or out-of-range JSON, an AI route) makes it answer "not proven",
// and the full path runs as before: it is only ever a shortcut to "equal",
// and FuzzTapeEqualSound holds it to the full path's verdict.

// tnode is one JSON value of a tape. Object members are a key node
// (kind tKey) followed by the value's nodes.
type tnode struct {
	kind       byte
	esc        bool    // a string or key with escapes: decode it
	wide       bool    // a string or key with bytes ≥ 0x80: checked for UTF-8 when its text is read
	start, end int32   // strings and keys: the bytes between the quotes; numbers: the literal
	next       int32   // the index after this value (its subtree included)
	n          int32   // objects: members; arrays: elements
	num        float64 // numbers: the value
}

const (
	tObj   = 'o'
	tArr   = 'a'
	tStr   = 's'
	tKey   = 'k'
	tNum   = 'n'
	tTrue  = 't'
	tFalse = 'f'
	tNull  = 'z'
)

// tapeMaxDepth bounds the parser's recursion; deeper documents take the
// full path (encoding/json's own limit is 10000).
const tapeMaxDepth = 200

// tapeMaxMembers bounds the members of an object the walk matches by key
// (quadratic); larger objects take the full path.
const tapeMaxMembers = 64

type tape struct {
	src   []byte
	nodes []tnode
}

var tapes = sync.Pool{New: func() any { return &tape{nodes: make([]tnode, 0, 128)} }}

// parseTape parses src as one JSON value; false when src is not valid JSON
// in every respect encoding/json checks (then the full path decides).
func (t *tape) parse(src []byte) bool {
	t.src, t.nodes = src, t.nodes[:0]
	p := tapeParser{t: t}
	p.ws()
	if !p.value(0) {
		return false
	}
	p.ws()
	return p.i == len(src)
}

type tapeParser struct {
	t *tape
	i int
}

func (p *tapeParser) ws() {
	s := p.t.src
	for p.i < len(s) {
		switch s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *tapeParser) value(depth int) bool {
	s := p.t.src
	if p.i >= len(s) || depth > tapeMaxDepth {
		return false
	}
	idx := len(p.t.nodes)
	switch c := s[p.i]; {
	case c == '{' || c == '[':
		kind, closer := byte(tObj), byte('}')
		if c == '[' {
			kind, closer = tArr, ']'
		}
		p.t.nodes = append(p.t.nodes, tnode{kind: kind})
		p.i++
		p.ws()
		var n int32
		if p.i < len(s) && s[p.i] == closer {
			p.i++
		} else {
			for {
				p.ws()
				if kind == tObj && !p.memberKey() {
					return false
				}
				if !p.value(depth + 1) {
					return false
				}
				n++
				p.ws()
				if p.i >= len(s) {
					return false
				}
				if s[p.i] == ',' {
					p.i++
					continue
				}
				if s[p.i] != closer {
					return false
				}
				p.i++
				break
			}
		}
		p.t.nodes[idx].n = n
	case c == '"':
		if !p.str(tStr) {
			return false
		}
	case c == 't':
		if !p.lit("true") {
			return false
		}
		p.t.nodes = append(p.t.nodes, tnode{kind: tTrue})
	case c == 'f':
		if !p.lit("false") {
			return false
		}
		p.t.nodes = append(p.t.nodes, tnode{kind: tFalse})
	case c == 'n':
		if !p.lit("null") {
			return false
		}
		p.t.nodes = append(p.t.nodes, tnode{kind: tNull})
	case c == '-' || c >= '0' && c <= '9':
		if !p.number() {
			return false
		}
	default:
		return false
	}
	p.t.nodes[idx].next = int32(len(p.t.nodes))
	return true
}

// memberKey reads an object member's key and its colon.
func (p *tapeParser) memberKey() bool {
	s := p.t.src
	if p.i >= len(s) || s[p.i] != '"' || !p.str(tKey) {
		return false
	}
	p.ws()
	if p.i >= len(s) || s[p.i] != ':' {
		return false
	}
	p.i++
	p.ws()
	return true
}

func (p *tapeParser) lit(w string) bool {
	if len(p.t.src)-p.i < len(w) || string(p.t.src[p.i:p.i+len(w)]) != w {
		return false
	}
	p.i += len(w)
	return true
}

// str reads a string starting at its opening quote.
func (p *tapeParser) str(kind byte) bool {
	s := p.t.src
	p.i++
	start, esc, wide := p.i, false, false
	// The usual string: no escape before its closing quote. Find the quote
	// and check the bytes before it eight at a time.
	if q := bytes.IndexByte(s[p.i:], '"'); q >= 0 {
		seg := s[p.i : p.i+q]
		if bytes.IndexByte(seg, '\\') < 0 {
			if controlOrWide(seg, &wide) {
				return false
			}
			p.i += q
		}
	}
	for p.i < len(s) {
		c := s[p.i]
		switch {
		case c == '"':
			p.t.nodes = append(p.t.nodes, tnode{kind: kind, esc: esc, wide: wide, start: int32(start), end: int32(p.i)})
			p.i++
			return true
		case c == '\\':
			esc = true
			if p.i+1 >= len(s) {
				return false
			}
			switch s[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(s) {
					return false
				}
				for _, h := range s[p.i+2 : p.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				p.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			wide = wide || c >= utf8.RuneSelf
			p.i++
		}
	}
	return false
}

// controlOrWide reports whether seg holds a control character (not allowed
// unescaped in a JSON string), and sets *wide when it holds a byte ≥ 0x80.
func controlOrWide(seg []byte, wide *bool) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	var or uint64
	i := 0
	for ; i+8 <= len(seg); i += 8 {
		x := binary.LittleEndian.Uint64(seg[i:])
		// a byte < 0x20 in x: (x - 0x20…) borrows into its high bit while
		// the byte's own high bit is clear
		if (x-0x20*lo)&^x&hi != 0 {
			return true
		}
		or |= x
	}
	for ; i < len(seg); i++ {
		if seg[i] < 0x20 {
			return true
		}
		or |= uint64(seg[i])
	}
	if or&hi != 0 {
		*wide = true
	}
	return false
}

func (p *tapeParser) number() bool {
	s, start := p.t.src, p.i
	digits := func() int {
		k := p.i
		for p.i < len(s) && s[p.i] >= '0' && s[p.i] <= '9' {
			p.i++
		}
		return p.i - k
	}
	if s[p.i] == '-' {
		p.i++
	}
	if p.i < len(s) && s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return false
	}
	if p.i < len(s) && s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return false
		}
	}
	if p.i < len(s) && (s[p.i] == 'e' || s[p.i] == 'E') {
		p.i++
		if p.i < len(s) && (s[p.i] == '+' || s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return false
		}
	}
	lit := s[start:p.i]
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(lit), len(lit)), 64)
	if err != nil { // out of range: encoding/json refuses it
		return false
	}
	p.t.nodes = append(p.t.nodes, tnode{kind: tNum, start: int32(start), end: int32(p.i), num: f})
	return true
}

// text is the string a string or key node decodes to. Without escapes it
// aliases the source bytes (valid only during the comparison).
func (t *tape) text(n *tnode) (string, bool) {
	raw := t.src[n.start:n.end]
	// Bytes that are not UTF-8 decode as U+FFFD: let encoding/json say
	// what it reads. Checked only here: a string that is never compared
	// (ignored, or judged by presence) is never checked.
	if !n.esc && (!n.wide || utf8.Valid(raw)) {
		return unsafe.String(unsafe.SliceData(raw), len(raw)), true
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if json.Unmarshal(q, &s) != nil {
		return "", false
	}
	return s, true
}

// tapeWalk compares two tapes under the engine's rules.
type tapeWalk struct {
	e    *engine
	a, b *tape
	saju bool
}

// tapeEqual reports whether the bodies are proven equal under the rules
// (a saju route's normalisation included); false means "not proven": the
// full path decides.
func (e *engine) tapeEqual(a, b []byte) bool {
	if e.kind == KindAI {
		return false
	}
	ta, tb := tapes.Get().(*tape), tapes.Get().(*tape)
	defer func() {
		for _, t := range []*tape{ta, tb} {
			t.src = nil
			if cap(t.nodes) <= 1<<16 {
				tapes.Put(t)
			}
		}
	}()
	return e.tapeEqualOn(ta, tb, a, b)
}

// tapeEqualOn is tapeEqual on the caller's tapes.
func (e *engine) tapeEqualOn(ta, tb *tape, a, b []byte) bool {
	if !ta.parse(a) || !tb.parse(b) {
		return false
	}
	w := tapeWalk{e: e, a: ta, b: tb, saju: e.kind == KindSaju}
	var buf [16]step
	return w.walk(0, 0, buf[:0])
}

func (w *tapeWalk) walk(ai, bi int32, steps []step) bool {
	e := w.e
	if e.ignore.matchAny(steps) {
		return true
	}
	x, y := &w.a.nodes[ai], &w.b.nodes[bi]
	if len(e.presence) > 0 && e.presence.matchAny(steps) {
		return x.present() == y.present()
	}
	if x.kind != y.kind {
		return false
	}
	switch x.kind {
	case tObj:
		return w.object(ai, bi, steps)
	case tArr:
		if len(e.unordered) > 0 && e.unordered.matchAny(steps) {
			return false
		}
		if x.n != y.n {
			for i := range max(x.n, y.n) {
				if !e.ignore.matchAny(append(steps, step{index: int(i), isIdx: true})) {
					return false
				}
			}
			return true
		}
		xi, yi := ai+1, bi+1
		for i := range x.n {
			if !w.walk(xi, yi, append(steps, step{index: int(i), isIdx: true})) {
				return false
			}
			xi, yi = w.a.nodes[xi].next, w.b.nodes[yi].next
		}
		return true
	case tStr:
		xs, ok1 := w.a.text(x)
		ys, ok2 := w.b.text(y)
		if !ok1 || !ok2 {
			return false
		}
		if w.saju {
			xs, ys = sajuString(steps, xs), sajuString(steps, ys)
		}
		return xs == ys || e.normOn && e.normalize(xs) == e.normalize(ys)
	case tNum:
		if x.num == y.num {
			return true
		}
		if tol, i := e.tolerance(steps); i >= 0 {
			return math.Abs(x.num-y.num) <= tol
		}
		return false
	default: // true, false, null
		return true
	}
}

// present is the full path's present() of the decoded value: a string,
// array or object with something in it, a number or a boolean.
func (n *tnode) present() bool {
	switch n.kind {
	case tNull:
		return false
	case tStr:
		return n.end > n.start // an escape or a byte always decodes to a character
	case tArr, tObj:
		return n.n > 0
	}
	return true
}

// members lists an object's members: key (normalised) and value index.
// false when a key cannot be decoded, the object is too large, or two keys
// are the same (a decoder keeps the last; the full path decides).
func (w *tapeWalk) members(t *tape, oi int32, steps []step, into []member) ([]member, bool) {
	o := &t.nodes[oi]
	if o.n > tapeMaxMembers {
		return nil, false
	}
	rename := w.saju && len(steps) == 1 && !steps[0].isIdx && steps[0].key == "elements"
	ki := oi + 1
	for range o.n {
		k, ok := t.text(&t.nodes[ki])
		if !ok {
			return nil, false
		}
		if rename {
			if n, ok := elementNames[k]; ok {
				k = n
			}
		}
		for _, m := range into {
			if m.key == k {
				return nil, false
			}
		}
		into = append(into, member{key: k, val: ki + 1})
		ki = t.nodes[ki+1].next
	}
	return into, true
}

type member struct {
	key string
	val int32
}

func (w *tapeWalk) object(ai, bi int32, steps []step) bool {
	var bufA, bufB [16]member
	xm, ok := w.members(w.a, ai, steps, bufA[:0])
	if !ok {
		return false
	}
	ym, ok := w.members(w.b, bi, steps, bufB[:0])
	if !ok {
		return false
	}
	e := w.e
	for _, xv := range xm {
		s := append(steps, step{key: xv.key})
		found := int32(-1)
		for _, yv := range ym {
			if yv.key == xv.key {
				found = yv.val
				break
			}
		}
		if found < 0 {
			if !e.ignore.matchAny(s) {
				return false
			}
			continue
		}
		if !w.walk(xv.val, found, s) {
			return false
		}
	}
	for _, yv := range ym {
		seen := false
		for _, xv := range xm {
			if xv.key == yv.key {
				seen = true
				break
			}
		}
		if !seen && !e.ignore.matchAny(append(steps, step{key: yv.key})) {
			return false
		}
	}
	return true
}

// ganjiHanja holds NormalizeGanji's answer for every stem and every
// stem+branch pair in either script (trimmed), so the tape walk rewrites
// the usual spellings without allocating; anything else goes through
// NormalizeGanji itself.
var ganjiHanja = func() map[string]string {
	m := map[string]string{}
	stems := [][]rune{[]rune(stemsHanja), []rune(stemsHangul)}
	branches := [][]rune{[]rune(branchesHanja), []rune(branchesHangul)}
	for _, ss := range stems {
		for _, st := range ss {
			m[string(st)] = NormalizeGanji(string(st))
			for _, bs := range branches {
				for _, br := range bs {
					k := string([]rune{st, br})
					m[k] = NormalizeGanji(k)
				}
			}
		}
	}
	return m
}()

func normalizeGanjiFast(s string) string {
	if h, ok := ganjiHanja[strings.TrimSpace(s)]; ok {
		return h
	}
	return NormalizeGanji(s)
}

// sajuString is normalizeSaju for one string value at steps: the same
// fields, the same rewriting.
func sajuString(steps []step, s string) string {
	switch len(steps) {
	case 2:
		if steps[0].isIdx || steps[1].isIdx {
			return s
		}
		switch steps[0].key {
		case "pillars":
			return normalizeGanjiFast(s)
		case "day_master":
			switch steps[1].key {
			case "stem":
				return normalizeGanjiFast(s)
			case "element":
				return normalizeWith(elementNames, s)
			case "yin_yang":
				return normalizeWith(yinYangNames, s)
			}
		case "ten_gods":
			t := strings.TrimSpace(s)
			if h, ok := tenGodNames[t]; ok {
				return h
			}
			return t
		case "luck":
			if steps[1].key == "direction" {
				return strings.ToLower(strings.TrimSpace(s))
			}
		}
	case 3:
		if !steps[0].isIdx && steps[0].key == "luck" && !steps[1].isIdx && steps[1].key == "pillars" && steps[2].isIdx {
			return normalizeGanjiFast(s)
		}
	}
	return s
}
