package sniff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"github.com/heal7/shadowcube/publisher"
)

// maxHeaderBytes bounds a request's or answer's header block (net/http's
// server default is 1 MiB too); longer is not HTTP we can follow.
const maxHeaderBytes = 1 << 20

// body reads one message body, framed by Content-Length, chunked encoding or
// the end of the connection, keeping at most max bytes.
type body struct {
	kind      int   // bodyLength, bodyChunked, bodyClose
	left      int64 // bodyLength: bytes still to come; chunked: of the current chunk
	chunkSt   int   // chunked: where in the chunk framing
	keep      bool  // store the bytes (captured exchange)
	max       int64
	buf       []byte
	truncated bool
	trailer   http.Header
}

const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyClose
)

// chunked framing states
const (
	chSize    = iota // reading the size line
	chData           // reading chunk data
	chDataEnd        // reading the CRLF after the data
	chTrailer        // reading trailer lines up to the empty line
)

func (b *body) add(p []byte) {
	if !b.keep {
		return
	}
	room := b.max - int64(len(b.buf))
	if int64(len(p)) > room {
		b.truncated = true
		p = p[:max(room, 0)]
	}
	b.buf = append(b.buf, p...)
}

// feed consumes body bytes from data; it returns how many bytes it used and
// whether the body is complete. A framing error is returned as err.
func (b *body) feed(data []byte) (n int, done bool, err error) {
	switch b.kind {
	case bodyNone:
		return 0, true, nil
	case bodyLength:
		k := min(int64(len(data)), b.left)
		b.add(data[:k])
		b.left -= k
		return int(k), b.left == 0, nil
	case bodyClose:
		b.add(data)
		return len(data), false, nil
	}
	// chunked
	for n < len(data) {
		rest := data[n:]
		switch b.chunkSt {
		case chSize:
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				if len(rest) > 4096 {
					return n, false, errors.New("chunk size line too long")
				}
				return n, false, nil
			}
			line := bytes.TrimRight(rest[:i], "\r")
			if j := bytes.IndexByte(line, ';'); j >= 0 { // chunk extensions
				line = line[:j]
			}
			size, perr := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if perr != nil || size < 0 {
				return n, false, fmt.Errorf("bad chunk size %q", line)
			}
			n += i + 1
			if size == 0 {
				b.chunkSt = chTrailer
			} else {
				b.left, b.chunkSt = size, chData
			}
		case chData:
			k := min(int64(len(rest)), b.left)
			b.add(rest[:k])
			b.left -= k
			n += int(k)
			if b.left == 0 {
				b.chunkSt = chDataEnd
			}
		case chDataEnd:
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				if len(rest) > 2 {
					return n, false, errors.New("no CRLF after chunk data")
				}
				return n, false, nil
			}
			if len(bytes.TrimRight(rest[:i], "\r")) != 0 {
				return n, false, errors.New("no CRLF after chunk data")
			}
			n += i + 1
			b.chunkSt = chSize
		case chTrailer:
			// trailer section: header lines up to an empty line
			end := bytes.Index(rest, []byte("\r\n"))
			if end == 0 {
				return n + 2, true, nil
			}
			blk := bytes.Index(rest, []byte("\r\n\r\n"))
			if blk < 0 {
				if len(rest) > maxHeaderBytes {
					return n, false, errors.New("trailer too long")
				}
				return n, false, nil
			}
			tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest[:blk+4])))
			h, perr := tp.ReadMIMEHeader()
			if perr != nil {
				return n, false, fmt.Errorf("bad trailer: %v", perr)
			}
			b.trailer = http.Header(h)
			return n + blk + 4, true, nil
		}
	}
	return n, false, nil
}

func (b *body) take() ([]byte, bool) { return b.buf, b.truncated }

// newBody sets up the reading of a body of the given framing.
func newBody(contentLength int64, chunked, untilClose, keep bool, maxBody int64) body {
	b := body{keep: keep, max: maxBody}
	switch {
	case chunked:
		b.kind = bodyChunked
	case contentLength > 0:
		b.kind, b.left = bodyLength, contentLength
		if keep {
			b.buf = make([]byte, 0, min(contentLength, maxBody))
		}
	case untilClose:
		b.kind = bodyClose
	default:
		b.kind = bodyNone
	}
	return b
}

func isChunked(te []string) bool { return len(te) > 0 && te[0] == "chunked" }

// exchange is one request on a connection, waiting for its answer.
type exchange struct {
	req     *http.Request
	seen    *publisher.Seen // nil: not captured (still followed, for pairing)
	reqBody body
	reqDone bool
	resp    *http.Response
	start   time.Time
}

// headerEnd returns the length of the header block at the start of data
// (up to and including the empty line), or -1.
func headerEnd(data []byte) int {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// headReader parses header blocks: ordinary ones on a fast path (head.go),
// others with net/http's own parser (the tap's requests and answers are read
// by it too) through one reader pair reused for every block: a Sniffer is
// fed by one goroutine.
type headReader struct {
	rd bytes.Reader
	br *bufio.Reader
	// intern tables of the fast path (head.go): header names as sent →
	// canonical, short values and request targets
	keys, values map[string]string
}

func (h *headReader) reader(hdr []byte) *bufio.Reader {
	h.rd.Reset(hdr)
	if h.br == nil {
		h.br = bufio.NewReaderSize(&h.rd, 4<<10) // longer lines are read in pieces by textproto
	} else {
		h.br.Reset(&h.rd)
	}
	return h.br
}

// parseRequestHead parses a request line and headers. The request's Body is
// http.NoBody: the body is read off the stream by the caller.
func (h *headReader) parseRequestHead(hdr []byte) (*http.Request, error) {
	if req, ok := h.fastRequest(hdr); ok {
		return req, nil
	}
	req, err := http.ReadRequest(h.reader(hdr))
	if err != nil {
		return nil, err
	}
	req.Body = http.NoBody // not a reader over the reused buffer
	return req, nil
}

// parseResponseHead parses a status line and headers, for req. The
// answer's Body is http.NoBody, as for requests.
func (h *headReader) parseResponseHead(hdr []byte, req *http.Request) (*http.Response, error) {
	if resp, ok := h.fastResponse(hdr, req); ok {
		return resp, nil
	}
	resp, err := http.ReadResponse(h.reader(hdr), req)
	if err != nil {
		return nil, err
	}
	resp.Body = http.NoBody
	return resp, nil
}

// bodyFramed reports whether the response can carry a body (RFC 9112 6.3).
func respHasBody(req *http.Request, status int) bool {
	if req.Method == http.MethodHead || status/100 == 1 || status == http.StatusNoContent || status == http.StatusNotModified {
		return false
	}
	return true
}
