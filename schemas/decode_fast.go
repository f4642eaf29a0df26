package schemas

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeRequestFast parses the RequestEvent documents AppendRequestEvent
// and encoding/json write (every replay decodes one): known keys spelt
// exactly, each once, in any order; valid UTF-8 strings (escapes other
// than surrogates only in values and header names);
// integers; true/false; base64 bodies; no null. ok is false for anything
// else, and then the general decoder (goccy/go-json, encoding/json for the
// errors) decides: the fast path never rejects a document, it only leaves
// it to the general one. FuzzDecodeRequestFast holds what it accepts to
// the general decoder's result.
func decodeRequestFast(data []byte) (ev RequestEvent, ok bool) {
	s := fastScanner{b: data}
	if !s.open('{') {
		return ev, false
	}
	var seen uint32
	if s.close('}') {
		return ev, s.end()
	}
	for {
		key, ok := s.key()
		if !ok {
			return ev, false
		}
		var bit uint32
		switch string(key) {
		case "v":
			bit = 1 << 0
			ev.V, ok = s.str()
		case "id":
			bit = 1 << 1
			ev.ID, ok = s.str()
		case "service":
			bit = 1 << 2
			ev.Service, ok = s.str()
		case "route":
			bit = 1 << 3
			ev.Route, ok = s.str()
		case "method":
			bit = 1 << 4
			ev.Method, ok = s.str()
		case "path":
			bit = 1 << 5
			ev.Path, ok = s.str()
		case "query":
			bit = 1 << 6
			ev.Query, ok = s.str()
		case "headers":
			bit = 1 << 7
			ev.Headers, ok = s.header()
		case "body":
			bit = 1 << 8
			ev.Body, ok = s.bytes()
		case "body_truncated":
			bit = 1 << 9
			ev.BodyTruncated, ok = s.boolean()
		case "user_key":
			bit = 1 << 10
			ev.UserKey, ok = s.str()
		case "traceparent":
			bit = 1 << 11
			ev.TraceParent, ok = s.str()
		case "captured_at":
			bit = 1 << 12
			ev.CapturedAt, ok = s.time()
		case "source":
			bit = 1 << 13
			var src string
			src, ok = s.str()
			ev.Source = Source(src)
		case "response":
			bit = 1 << 14
			ok = s.response(&ev.Response)
		default:
			return ev, false
		}
		if !ok || seen&bit != 0 {
			return ev, false
		}
		seen |= bit
		if s.close('}') {
			return ev, s.end()
		}
		if !s.open(',') {
			return ev, false
		}
	}
}

// fastScanner reads the plain JSON decodeRequestFast accepts.
type fastScanner struct {
	b []byte
	i int
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// open consumes c (after white space) and reports whether it was there.
func (s *fastScanner) open(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *fastScanner) close(c byte) bool { return s.open(c) }

// end reports whether only white space is left.
func (s *fastScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// raw returns the contents of a string without control characters, as
// valid UTF-8; escaped says it holds escapes (checked: simple ones and
// \uXXXX outside the surrogates).
func (s *fastScanner) raw() (out []byte, escaped, ok bool) {
	if !s.open('"') {
		return nil, false, false
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			out := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(out) {
				return nil, false, false
			}
			return out, escaped, true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				r, ok := hex4(s.b[s.i+2:])
				if !ok || utf16.IsSurrogate(r) {
					return nil, false, false
				}
				s.i += 6
			default:
				return nil, false, false
			}
			continue
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.i++
	}
	return nil, false, false
}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// plain returns the contents of a string without escapes.
func (s *fastScanner) plain() ([]byte, bool) {
	b, escaped, ok := s.raw()
	return b, ok && !escaped
}

func (s *fastScanner) key() ([]byte, bool) {
	k, ok := s.plain()
	if !ok || !s.open(':') {
		return nil, false
	}
	return k, true
}

func (s *fastScanner) str() (string, bool) {
	b, escaped, ok := s.raw()
	if !ok {
		return "", false
	}
	if !escaped {
		return string(b), true
	}
	// raw checked every escape.
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(b[i+1:])
			out = utf8.AppendRune(out, r)
			i += 4
		default: // " \ /
			out = append(out, b[i])
		}
	}
	return string(out), true
}

// bytes decodes a non-empty base64 string (encoding/json's []byte form).
// The decoder refuses every byte outside the alphabet but the line breaks
// it skips (invalid in a JSON string), which the decoded length shows; so
// only the closing quote and escapes are looked for here.
func (s *fastScanner) bytes() ([]byte, bool) {
	if !s.open('"') {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end <= 0 {
		return nil, false
	}
	in := s.b[s.i : s.i+end]
	if len(in)%4 != 0 || bytes.IndexByte(in, '\\') >= 0 {
		return nil, false
	}
	s.i += end + 1
	out := make([]byte, base64.StdEncoding.DecodedLen(len(in)))
	n, err := base64.StdEncoding.Decode(out, in)
	pad := 0
	for i := len(in) - 1; i >= len(in)-2 && in[i] == '='; i-- {
		pad++
	}
	if err != nil || n != len(in)/4*3-pad {
		return nil, false
	}
	return out[:n], true
}

func (s *fastScanner) boolean() (bool, bool) {
	s.ws()
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// int64 reads an integer in JSON's form (no leading zeros, no fraction or
// exponent).
func (s *fastScanner) int64() (int64, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - digits
	if n == 0 || (n > 1 && s.b[digits] == '0') {
		return 0, false
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	return v, err == nil
}

// time reads a time string as time.Time's UnmarshalJSON does.
func (s *fastScanner) time() (time.Time, bool) {
	s.ws()
	start := s.i
	if _, ok := s.plain(); !ok {
		return time.Time{}, false
	}
	var t time.Time
	if err := t.UnmarshalJSON(s.b[start:s.i]); err != nil {
		return time.Time{}, false
	}
	return t, true
}

// header reads an object of string lists.
func (s *fastScanner) header() (http.Header, bool) {
	if !s.open('{') {
		return nil, false
	}
	h := http.Header{}
	if s.close('}') {
		return h, true
	}
	for {
		name, ok := s.str()
		if !ok || !s.open(':') || !s.open('[') {
			return nil, false
		}
		if _, dup := h[name]; dup {
			return nil, false
		}
		vs := []string{}
		if !s.close(']') {
			for {
				v, ok := s.str()
				if !ok {
					return nil, false
				}
				vs = append(vs, v)
				if s.close(']') {
					break
				}
				if !s.open(',') {
					return nil, false
				}
			}
		}
		h[name] = vs
		if s.close('}') {
			return h, true
		}
		if !s.open(',') {
			return nil, false
		}
	}
}

// response reads an HTTPResponse object into r.
func (s *fastScanner) response(r *HTTPResponse) bool {
	if !s.open('{') {
		return false
	}
	if s.close('}') {
		return true
	}
	var seen uint32
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		var bit uint32
		switch string(key) {
		case "status":
			bit = 1 << 0
			var v int64
			v, ok = s.int64()
			r.Status = int(v)
			ok = ok && int64(r.Status) == v
		case "headers":
			bit = 1 << 1
			r.Headers, ok = s.header()
		case "body":
			bit = 1 << 2
			r.Body, ok = s.bytes()
		case "body_truncated":
			bit = 1 << 3
			r.BodyTruncated, ok = s.boolean()
		case "latency_ns":
			bit = 1 << 4
			var v int64
			v, ok = s.int64()
			r.Latency = time.Duration(v)
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if s.close('}') {
			return true
		}
		if !s.open(',') {
			return false
		}
	}
}
