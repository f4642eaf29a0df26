package publisher

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// GoReplay's file format (github.com/buger/goreplay, protocol.go and
// input_raw.go): payloads separated by "\n🐵🙈🙉\n", each a header line
//
//	<type> <id> <start unix ns> <duration ns>
//
// (type 1 request, 2 the original response, 3 a response replayed by gor:
// not the legacy's, skipped), then the HTTP message as it was on the wire.
// A request and its response share the id.
const gorSeparator = "\n🐵🙈🙉\n"

// gorMaxPayload bounds one payload: two capped bodies and headers fit.
const gorMaxPayload = schemas.MaxEventSize

type gorPayload struct {
	kind    byte
	id      string
	start   time.Time
	latency time.Duration
	msg     []byte
	off     int64
}

// gorSplit reads payloads one at a time, with the byte offset of each.
type gorSplit struct {
	br  *bufio.Reader
	off int64
	buf []byte
}

// next returns the next payload's bytes and offset; io.EOF at the end.
func (g *gorSplit) next() ([]byte, int64, error) {
	g.buf = g.buf[:0]
	start := g.off
	sep := []byte(gorSeparator)
	for {
		line, err := g.br.ReadSlice('\n')
		g.buf = append(g.buf, line...)
		g.off += int64(len(line))
		if bytes.HasSuffix(g.buf, sep) {
			return g.buf[:len(g.buf)-len(sep)], start, nil
		}
		if len(g.buf) > gorMaxPayload+len(sep) {
			return nil, start, fmt.Errorf("payload of more than %d bytes without a separator", gorMaxPayload)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				if len(bytes.TrimSpace(g.buf)) == 0 {
					return nil, start, io.EOF
				}
				// gor ends the file with a separator; a last payload
				// without one was cut: read it all the same
				return bytes.TrimSuffix(g.buf, sep[:1]), start, nil
			}
			return nil, start, err
		}
	}
}

func parseGorPayload(p []byte, off int64) (gorPayload, error) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return gorPayload{}, errors.New("no header line (want \"<type> <id> <start ns> <duration ns>\")")
	}
	f := bytes.Fields(p[:i])
	if len(f) < 3 || len(f[0]) != 1 || f[0][0] < '1' || f[0][0] > '3' {
		return gorPayload{}, fmt.Errorf("header line %q: want \"<type 1|2|3> <id> <start ns> <duration ns>\"", p[:min(i, 80)])
	}
	ts, err := strconv.ParseInt(string(f[2]), 10, 64)
	if err != nil {
		return gorPayload{}, fmt.Errorf("header line %q: start %q is not a unix time in nanoseconds", p[:min(i, 80)], f[2])
	}
	var lat int64
	if len(f) > 3 {
		if lat, err = strconv.ParseInt(string(f[3]), 10, 64); err != nil {
			return gorPayload{}, fmt.Errorf("header line %q: duration %q is not a number of nanoseconds", p[:min(i, 80)], f[3])
		}
	}
	return gorPayload{kind: f[0][0], id: string(f[1]), start: time.Unix(0, ts), latency: time.Duration(max(lat, 0)), msg: p[i+1:], off: off}, nil
}

// gor imports a GoReplay file: each request paired with its response by
// id. A response with no request (gor misses pipelined requests) or a
// request with no response is a bad record: no event is made without the
// legacy's answer.
func (imp *importer) gor(ctx context.Context, r io.Reader) error {
	g := &gorSplit{br: bufio.NewReaderSize(r, 256<<10)}
	reqs := map[string]gorPayload{}
	var order []string // request ids in file order, for the report at the end
	for {
		raw, off, err := g.next()
		imp.read = g.off
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return imp.stop(off, err)
		}
		p, err := parseGorPayload(raw, off)
		if err != nil {
			if err := imp.badAt(off, "%v", err); err != nil {
				return err
			}
			continue
		}
		switch p.kind {
		case '1':
			p.msg = bytes.Clone(p.msg)
			if _, dup := reqs[p.id]; dup {
				if err := imp.badAt(off, "request %s appears twice", p.id); err != nil {
					return err
				}
				continue
			}
			reqs[p.id] = p
			order = append(order, p.id)
		case '2':
			req, ok := reqs[p.id]
			if !ok {
				if err := imp.badAt(off, "response %s has no request before it (GoReplay misses pipelined requests)", p.id); err != nil {
					return err
				}
				continue
			}
			delete(reqs, p.id)
			ev, err := imp.c.gorEvent(req, p)
			if err == nil {
				err = imp.complete(ev, append(req.msg, p.msg...))
			}
			if err != nil {
				if err := imp.badAt(req.off, "request %s: %v", p.id, err); err != nil {
					return err
				}
				continue
			}
			if err := imp.enqueue(ctx, ev); err != nil {
				return err
			}
		case '3': // replayed by gor against another target: not the legacy's answer
		}
	}
	for _, id := range order {
		if req, ok := reqs[id]; ok {
			if err := imp.badAt(req.off, "request %s has no response in the file (record with --input-raw-track-response)", id); err != nil {
				return err
			}
		}
	}
	return nil
}

// stop records a fatal read error at off.
func (imp *importer) stop(off int64, err error) error {
	le := &LineError{File: imp.name, Offset: off, Msg: err.Error()}
	imp.res.Bad = append(imp.res.Bad, le)
	return fmt.Errorf("%w: %w", ErrBadRecord, le)
}

// gorEvent parses a GoReplay request and response into an event.
func (c *Capturer) gorEvent(req, resp gorPayload) (*schemas.RequestEvent, error) {
	hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req.msg)))
	if err != nil {
		return nil, fmt.Errorf("not an HTTP/1.x request: %v", err)
	}
	body, btrunc, err := readCapped(hr.Body, c.cfg.MaxBody)
	if err != nil {
		return nil, fmt.Errorf("request body: %v", err)
	}
	hresp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp.msg)), hr)
	if err != nil {
		return nil, fmt.Errorf("not an HTTP/1.x response: %v", err)
	}
	rbody, rtrunc, err := readCapped(hresp.Body, c.cfg.MaxBody)
	if err != nil {
		return nil, fmt.Errorf("response body: %v", err)
	}
	removeHopByHop(hresp.Header)
	d := decision{route: ""} // route, user key: by complete and sanitize, as for every import
	ev := c.exchangeEvent(&d, hr, req.start, hresp, resp.start.Add(resp.latency).Sub(req.start))
	ev.Source = schemas.SourceImport
	ev.Body, ev.BodyTruncated = body, btrunc
	ev.Response.Body, ev.Response.BodyTruncated = rbody, rtrunc
	if ev.Response.Latency < 0 {
		ev.Response.Latency = 0
	}
	return ev, nil
}

// readCapped reads a body up to max bytes; a body cut short in the
// recording (payload limit) counts as truncated, like one over the cap.
func readCapped(rc io.ReadCloser, max int64) ([]byte, bool, error) {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return b, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if int64(len(b)) > max {
		return b[:max], true, nil
	}
	return b, false, nil
}
