package sniff

import (
	"net/http"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/heal7/shadowcube/publisher"
)

// conn follows one TCP connection: the client's bytes are parsed into
// requests, the server's into answers, paired in order (HTTP/1.1 answers
// come in request order, pipelined or not).
type conn struct {
	s          *Sniffer
	clientAddr string // ip:port of the client, for the trusted-proxy check
	clientPort layers.TCPPort
	serverPort layers.TCPPort
	known      bool           // which side is the client is decided
	firstSrc   layers.TCPPort // source port of the first packet (reassembly's client-to-server direction)
	syn        [2]bool
	broken     bool // given up: nothing more is published from this connection
	brokenWhy  string

	reqBuf, respBuf     []byte      // bytes still to parse (see unread and keep)
	reqStore, respStore []byte      // what holds them between segments
	pending             []*exchange // requests in order; the head awaits its answer
	cur                 *exchange   // request whose body is being read
	resp                *exchange   // exchange whose answer body is being read
	respBody            body
	lastTS              time.Time
}

// dirClient is the direction of bytes sent by the client.
func (c *conn) fromClient(src layers.TCPPort) bool { return src == c.clientPort }

// Accept takes every packet; it records SYNs to tell a connection seen from
// its start from one joined mid-way.
func (c *conn) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	if tcp.SYN {
		if c.fromClient(tcp.SrcPort) {
			c.syn[0] = true
		} else {
			c.syn[1] = true
		}
	} else if (!c.syn[0] || !c.syn[1]) && !*start && len(tcp.Payload) > 0 {
		// Joined mid-way: start at once (so the data is not held back
		// waiting for a SYN that never comes) and give the connection up
		// when its first bytes arrive.
		*start = true
	}
	return true
}

// ReassembledSG receives the bytes of one direction in order.
func (c *conn) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	if c.broken {
		return
	}
	dir, _, _, skip := sg.Info()
	n, _ := sg.Lengths()
	if n == 0 && skip == 0 {
		return
	}
	ci := sg.CaptureInfo(0)
	c.lastTS = ci.Timestamp
	if !c.known || !c.syn[0] || !c.syn[1] {
		c.fail(ReasonMidstream, 1)
		return
	}
	if skip != 0 {
		c.fail(ReasonLostSegments, c.affected())
		return
	}
	// reassembly's direction is that of the first packet; ours is by port
	client := (dir == reassembly.TCPDirClientToServer) == (c.firstSrc == c.clientPort)
	data := sg.Fetch(n)
	if client {
		c.reqBuf = unread(c.reqBuf, &c.reqStore, data)
		c.parseRequests(ci.Timestamp)
		c.reqBuf = keep(c.reqBuf, &c.reqStore)
	} else {
		c.respBuf = unread(c.respBuf, &c.respStore, data)
	}
	if !c.broken {
		c.parseResponses(ci.Timestamp)
	}
	c.respBuf = keep(c.respBuf, &c.respStore)
}

// unread returns the bytes of one direction still to parse: data itself
// when nothing was left over (parsed in place: usually a request or an
// answer head comes whole in one segment), else the leftover, which keep
// put at the start of store, with data appended.
func unread(buf []byte, store *[]byte, data []byte) []byte {
	if len(buf) == 0 {
		return data
	}
	buf = append(buf, data...)
	*store = buf[:0]
	return buf
}

// keep returns what parsing left of buf, held in store: data handed by
// the reassembler is valid during the call only, so a leftover in it is
// copied. A large store mostly unused is let go.
func keep(buf []byte, store *[]byte) []byte {
	if len(buf) == 0 {
		return nil
	}
	if cap(*store) > 0 && &buf[0] == &(*store)[:1][0] {
		return buf // the leftover is already at the start of store
	}
	if cap(*store) > 64<<10 && len(buf) < cap(*store)/4 {
		*store = nil
	}
	*store = append((*store)[:0], buf...) // buf may be a later part of store: append moves it down
	return *store
}

// affected counts the exchanges a break loses: those begun and not
// published, at least one.
func (c *conn) affected() int {
	n := len(c.pending)
	if c.cur != nil && (len(c.pending) == 0 || c.pending[len(c.pending)-1] != c.cur) {
		n++
	}
	if n == 0 && (len(c.reqBuf) > 0 || len(c.respBuf) > 0) {
		n = 1
	}
	return max(n, 1)
}

// fail gives the connection up, counting n lost exchanges.
func (c *conn) fail(reason string, n int) {
	if c.broken {
		return
	}
	c.broken, c.brokenWhy = true, reason
	c.s.dropped(reason, n)
	c.pending, c.cur, c.resp, c.reqBuf, c.respBuf, c.reqStore, c.respStore = nil, nil, nil, nil, nil, nil, nil
}

// parseRequests reads whole request heads and bodies from reqBuf.
func (c *conn) parseRequests(ts time.Time) {
	for !c.broken {
		if c.cur != nil {
			n, done, err := c.cur.reqBody.feed(c.reqBuf)
			c.reqBuf = c.reqBuf[n:]
			if err != nil {
				c.fail(ReasonNotHTTP, c.affected())
				return
			}
			if !done {
				return
			}
			c.cur.reqDone = true
			c.cur = nil
			continue
		}
		if len(c.reqBuf) == 0 {
			return
		}
		end := headerEnd(c.reqBuf)
		if end < 0 {
			if len(c.reqBuf) > maxHeaderBytes {
				c.fail(ReasonNotHTTP, c.affected())
			} else if !looksLikeRequest(c.reqBuf) {
				c.fail(notHTTPReason(c.reqBuf), c.affected())
			}
			return
		}
		req, err := c.s.heads.parseRequestHead(c.reqBuf[:end])
		if err != nil || req.ProtoMajor != 1 {
			c.fail(notHTTPReason(c.reqBuf), c.affected())
			return
		}
		c.reqBuf = c.reqBuf[end:]
		req.RemoteAddr = c.clientAddr
		x := &exchange{req: req, start: ts}
		x.seen = c.s.capt.See(req, ts)
		x.reqBody = newBody(req.ContentLength, isChunked(req.TransferEncoding), false, x.seen != nil, c.s.maxBody)
		c.pending = append(c.pending, x)
		c.cur = x
	}
}

// parseResponses reads answers from respBuf and pairs each with the oldest
// request waiting.
func (c *conn) parseResponses(ts time.Time) {
	for !c.broken {
		if c.resp != nil {
			n, done, err := c.respBody.feed(c.respBuf)
			c.respBuf = c.respBuf[n:]
			if err != nil {
				c.fail(ReasonNotHTTP, c.affected())
				return
			}
			if !done {
				return
			}
			c.answered(ts)
			continue
		}
		if len(c.respBuf) == 0 {
			return
		}
		if len(c.pending) == 0 {
			// an answer before its request's head: wait for it, within reason
			if len(c.respBuf) > maxHeaderBytes {
				c.fail(ReasonUnpaired, 1)
			}
			return
		}
		end := headerEnd(c.respBuf)
		if end < 0 {
			if len(c.respBuf) > maxHeaderBytes || !looksLikeResponse(c.respBuf) {
				c.fail(notHTTPReason(c.respBuf), c.affected())
			}
			return
		}
		x := c.pending[0]
		resp, err := c.s.heads.parseResponseHead(c.respBuf[:end], x.req)
		if err != nil {
			c.fail(notHTTPReason(c.respBuf), c.affected())
			return
		}
		c.respBuf = c.respBuf[end:]
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// an upgraded connection (WebSocket) is no longer HTTP; the tap
			// does not capture it either
			c.broken, c.brokenWhy = true, "upgraded"
			return
		}
		if resp.StatusCode/100 == 1 {
			continue // 100 Continue and friends: the final answer follows
		}
		hasBody := respHasBody(x.req, resp.StatusCode)
		cl := resp.ContentLength
		if !hasBody {
			cl = 0
		}
		c.resp = x
		c.respBody = newBody(cl, hasBody && isChunked(resp.TransferEncoding), hasBody && cl < 0, x.seen != nil, c.s.maxBody)
		x.resp = resp
	}
}

// answered pairs the finished answer with its request and publishes it.
func (c *conn) answered(ts time.Time) {
	x := c.resp
	c.resp = nil
	c.pending = c.pending[1:]
	if !x.reqDone {
		// the server answered before the request body ended (e.g. 413):
		// the tap would have the whole body, we do not
		c.fail(ReasonUnpaired, c.affected()+1)
		return
	}
	c.s.exchanged()
	if x.seen == nil {
		return
	}
	if c.respBody.trailer != nil {
		if x.resp.Trailer == nil {
			x.resp.Trailer = http.Header{}
		}
		for k, v := range c.respBody.trailer {
			x.resp.Trailer[k] = v
		}
	}
	reqBody, reqTrunc := x.reqBody.take()
	respBody, respTrunc := c.respBody.take()
	o := publisher.Observed{
		Body: reqBody, BodyTruncated: reqTrunc,
		Response: x.resp, RespBody: respBody, RespTruncated: respTrunc,
		End: ts, Source: c.s.source,
	}
	c.s.publish(x.seen, o)
}

// ReassemblyComplete is called at FIN, RST or when the connection is
// flushed as idle. An answer framed by the end of the connection completes
// here; anything else unfinished is counted.
func (c *conn) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	if c.broken {
		return true
	}
	if c.resp != nil && c.respBody.kind == bodyClose && len(c.respBuf) == 0 {
		c.answered(c.lastTS)
	}
	if n := len(c.pending); n > 0 || c.cur != nil || len(c.reqBuf) > 0 {
		c.fail(ReasonIncomplete, c.affected())
	}
	return true
}

func looksLikeRequest(b []byte) bool {
	for i := 0; i < len(b) && i < 16; i++ {
		ch := b[i]
		if ch == ' ' {
			return i > 0
		}
		if ch < 'A' || ch > 'Z' {
			return ch == '-' || ch == '_'
		}
	}
	return true
}

func looksLikeResponse(b []byte) bool {
	const p = "HTTP/1."
	n := min(len(b), len(p))
	return string(b[:n]) == p[:n]
}

// notHTTPReason tells TLS from other bytes that are not HTTP/1.x.
func notHTTPReason(b []byte) string {
	if len(b) >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 {
		return ReasonTLS
	}
	if len(b) >= 3 && b[0] == 0x15 && b[1] == 0x03 {
		return ReasonTLS
	}
	if len(b) >= 24 && string(b[:24]) == "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
		return ReasonHTTP2
	}
	return ReasonNotHTTP
}
