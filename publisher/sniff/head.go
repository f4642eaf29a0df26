package sniff

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// The fast path of header parsing. net/http's parser (http.ReadRequest,
// http.ReadResponse) was half of sniff's own CPU per exchange: a
// textproto reader, a string per line, a canonicalized copy of every key.
// The heads of ordinary traffic (request line or status line, then
// "Name: value" lines of printable ASCII, no folding, at most one
// Content-Length and Host, no Pragma, no Trailer, no Transfer-Encoding
// but a single "chunked" on an answer) are parsed here into what net/http
// would return, with the names and the values of common headers seen
// before interned. Anything else returns ok false, and the caller parses
// the head with net/http, which also gives its errors. TestFastHeadsProperty
// and FuzzFastHeads hold both parsers to the same results.

// internMax bounds each intern table, internLen the strings kept in them
// (longer ones, and those past the bound, are allocated as usual): a few
// tens of KiB at most.
const (
	internMax = 512
	internLen = 64
)

// interned returns b as a string, shared with earlier equal ones.
func interned(tab map[string]string, b []byte) string {
	if len(b) > internLen {
		return string(b)
	}
	if s, ok := tab[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(tab) < internMax {
		tab[s] = s
	}
	return s
}

// sharedValues are the headers whose values are interned: few distinct
// values, none personal (user ids, cookies and credentials are not kept
// beyond their event).
var sharedValues = map[string]bool{
	"Accept": true, "Accept-Encoding": true, "Accept-Language": true, "Cache-Control": true, "Connection": true,
	"Content-Encoding": true, "Content-Length": true, "Content-Type": true, "Host": true, "Server": true,
	"User-Agent": true, "Vary": true,
}

// canonicalKey returns the canonical form of a header name (a valid token).
func (h *headReader) canonicalKey(b []byte) string {
	if s, ok := h.keys[string(b)]; ok {
		return s
	}
	s := textproto.CanonicalMIMEHeaderKey(string(b))
	if len(h.keys) < internMax && len(b) <= internLen {
		h.keys[string(b)] = s
	}
	return s
}

// tokenByte is RFC 9110's tchar: the bytes of methods and header names.
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// isText reports whether b is printable ASCII, spaces and tabs only.
func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c > 0x7e {
			return false
		}
	}
	return true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

var crlf = []byte("\r\n")

// fastVersion parses the two versions the fast path takes.
func fastVersion(b []byte) (proto string, minor int, ok bool) {
	switch string(b) {
	case "HTTP/1.1":
		return "HTTP/1.1", 1, true
	case "HTTP/1.0":
		return "HTTP/1.0", 0, true
	}
	return "", 0, false
}

// fastHeader parses the header lines of a head (after its first line, up
// to and including the empty line). ok is false for anything the fast path
// leaves to net/http.
func (h *headReader) fastHeader(lines []byte) (http.Header, bool) {
	if h.keys == nil {
		h.keys, h.values = map[string]string{}, map[string]string{}
	}
	n := bytes.Count(lines, crlf) - 1
	hdr := make(http.Header, n)
	strs := make([]string, n) // one backing array for single values, as textproto does
	for {
		i := bytes.Index(lines, crlf)
		if i < 0 {
			return nil, false
		}
		line := lines[:i]
		lines = lines[i+2:]
		if len(line) == 0 {
			return hdr, len(lines) == 0
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !isToken(line[:colon]) || !isText(line[colon+1:]) {
			return nil, false // folded lines (leading space) and bad bytes too
		}
		key := h.canonicalKey(line[:colon])
		var value string
		if v := trimSpace(line[colon+1:]); sharedValues[key] {
			value = interned(h.values, v)
		} else {
			value = string(v)
		}
		if vv, ok := hdr[key]; ok {
			hdr[key] = append(vv, value)
		} else if len(strs) > 0 {
			strs[0] = value
			hdr[key], strs = strs[:1:1], strs[1:]
		} else {
			hdr[key] = []string{value}
		}
	}
}

// contentLength is the single Content-Length of hdr, -1 when absent; ok is
// false for several or a bad one.
func contentLength(hdr http.Header) (int64, bool) {
	cl, ok := hdr["Content-Length"]
	if !ok {
		return -1, true
	}
	if len(cl) != 1 {
		return 0, false
	}
	n, err := strconv.ParseUint(cl[0], 10, 63)
	return int64(n), err == nil
}

// fastRequest parses a request head (request line, headers, empty line)
// as http.ReadRequest would; ok is false when it leaves it to net/http.
func (h *headReader) fastRequest(head []byte) (*http.Request, bool) {
	i := bytes.Index(head, crlf)
	if i < 0 {
		return nil, false
	}
	line := head[:i]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return nil, false
	}
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return nil, false
	}
	target := rest[:sp2]
	proto, minor, ok := fastVersion(rest[sp2+1:])
	if !ok || !isToken(method) || string(method) == "CONNECT" ||
		len(target) == 0 || target[0] != '/' || (len(target) > 1 && target[1] == '/') || !isText(target) || bytes.IndexByte(target, '\t') >= 0 {
		return nil, false
	}
	hdr, ok := h.fastHeader(head[i+2:])
	if !ok || len(hdr["Host"]) > 1 {
		return nil, false
	}
	for _, k := range [...]string{"Pragma", "Trailer", "Transfer-Encoding"} {
		if _, ok := hdr[k]; ok {
			return nil, false
		}
	}
	cl, ok := contentLength(hdr)
	if !ok {
		return nil, false
	}
	uri := string(target) // not interned: queries may be personal
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, false
	}
	req := &http.Request{
		Method:     interned(h.values, method),
		URL:        u,
		Proto:      proto,
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     hdr,
		Body:       http.NoBody,
		Host:       u.Host,
		RequestURI: uri,
	}
	if req.Host == "" {
		req.Host = hdr.Get("Host")
	}
	delete(hdr, "Host")            // as http.ReadRequest does
	req.ContentLength = max(cl, 0) // a request without a length has no body
	conn := hdr["Connection"]
	req.Close = httpguts.HeaderValuesContainsToken(conn, "close") ||
		(minor == 0 && !httpguts.HeaderValuesContainsToken(conn, "keep-alive"))
	return req, true
}

// fastResponse parses an answer's head as http.ReadResponse would for req;
// ok is false when it leaves it to net/http.
func (h *headReader) fastResponse(head []byte, req *http.Request) (*http.Response, bool) {
	i := bytes.Index(head, crlf)
	if i < 0 || req.Method == http.MethodHead {
		return nil, false
	}
	line := head[:i]
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return nil, false
	}
	proto, minor, ok := fastVersion(line[:sp])
	status := line[sp+1:]
	if !ok || len(status) < 3 || !isText(status) || (len(status) > 3 && status[3] != ' ') {
		return nil, false
	}
	code := 0
	for _, c := range status[:3] {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	hdr, ok := h.fastHeader(head[i+2:])
	if !ok {
		return nil, false
	}
	for _, k := range [...]string{"Pragma", "Trailer"} {
		if _, ok := hdr[k]; ok {
			return nil, false
		}
	}
	chunked := false
	if te, ok := hdr["Transfer-Encoding"]; ok {
		if minor != 1 || len(te) != 1 || te[0] != "chunked" {
			return nil, false
		}
		chunked = true
		delete(hdr, "Transfer-Encoding")
	}
	cl, ok := contentLength(hdr)
	if !ok {
		return nil, false
	}
	resp := &http.Response{
		Status:     interned(h.values, status),
		StatusCode: code,
		Proto:      proto,
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     hdr,
		Body:       http.NoBody,
		Request:    req,
	}
	conn := hdr["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if minor == 0 {
		resp.Close = hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else {
		resp.Close = hasClose
		if hasClose {
			delete(hdr, "Connection")
		}
	}
	if chunked {
		resp.TransferEncoding = []string{"chunked"}
	}
	switch {
	case code/100 == 1 || code == http.StatusNoContent || code == http.StatusNotModified:
		resp.ContentLength = 0
	case chunked:
		delete(hdr, "Content-Length")
		resp.ContentLength = -1
	default:
		resp.ContentLength = cl
		if cl == -1 {
			resp.Close = true // the body ends with the connection
		}
	}
	return resp, true
}
