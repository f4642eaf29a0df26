package sniff

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

const bigBody = 3 << 20 // 3 MiB: over the 1 MiB cap

// legacyHandler is a small legacy-like service: JSON, chunked answers with
// a trailer, gzip, HEAD, 5xx, 3 MiB bodies both ways.
func legacyHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Date", "Mon, 30 Nov 2026 12:00:00 GMT")
	w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
	switch r.URL.Path {
	case "/api/saju/chart":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"year":%q,"pillar":"gyeong-o"}`, r.URL.Query().Get("year"))
	case "/stream":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Trailer", "X-Correlation-Id")
		for i := range 3 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Correlation-Id", "corr-"+r.Header.Get("X-Request-Id"))
	case "/gzip":
		w.Header().Set("Content-Type", "text/plain")
		text := strings.Repeat("saju ", 400)
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			io.WriteString(w, text)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, text)
		zw.Close()
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Query().Get("stream") == "1" {
			w.(http.Flusher).Flush() // chunked, no length
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		w.Write(b)
	case "/fail":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"legacy overloaded"}`)
	default:
		http.NotFound(w, r)
	}
}

// rawReq is one request written as bytes on a connection.
type rawReq struct {
	id, method, target string
	header             string // extra header lines, each ending in \r\n
	body               []byte
	chunked            bool
}

func (q rawReq) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: legacy.test\r\nX-Request-Id: %s\r\n%s", q.method, q.target, q.id, q.header)
	switch {
	case q.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for rest := q.body; len(rest) > 0; {
			n := min(len(rest), 7000)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		b.WriteString("0\r\n\r\n")
	case q.body != nil:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(q.body))
		b.Write(q.body)
	default:
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// conversation sends batches of requests on one connection; the requests of
// a batch go out in one write (pipelined), then all their answers are read.
func conversation(tb testing.TB, addr string, batches ...[]rawReq) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	for _, batch := range batches {
		var out []byte
		for _, q := range batch {
			out = append(out, q.bytes()...)
		}
		if _, err := c.Write(out); err != nil {
			tb.Fatal(err)
		}
		for _, q := range batch {
			resp, err := http.ReadResponse(br, &http.Request{Method: q.method})
			if err != nil {
				tb.Fatalf("answer to %s: %v", q.id, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// traffic is the test's request mix: keep-alive, pipelining, chunked both
// ways, a trailer, gzip, HEAD, 5xx, 3 MiB bodies, credentials to strip.
func traffic(tb testing.TB, addr string) int {
	big := pattern(bigBody)
	var wg sync.WaitGroup
	convs := [][][]rawReq{
		{
			{{id: "a1", method: "GET", target: "/api/saju/chart?year=1990&token=s3cret", header: "X-User-Id: user-7\r\nAuthorization: Bearer abc\r\nCookie: sid=1\r\n"}},
			{ // pipelined
				{id: "a2", method: "GET", target: "/stream"},
				{id: "a3", method: "GET", target: "/gzip", header: "Accept-Encoding: gzip\r\n"},
				{id: "a4", method: "HEAD", target: "/api/saju/chart?year=2001"},
			},
			{{id: "a5", method: "POST", target: "/echo", header: "Content-Type: application/octet-stream\r\n", body: big}},
			{{id: "a6", method: "POST", target: "/echo?stream=1", header: "Content-Type: application/json\r\n", body: []byte(`{"name":"kim","born":"1990-02-04"}`), chunked: true}},
		},
		{
			{{id: "b1", method: "GET", target: "/fail"}},
			{{id: "b2", method: "POST", target: "/echo?stream=1", body: big, chunked: true}},
			{ // pipelined, the last closes the connection
				{id: "b3", method: "GET", target: "/gzip"},
				{id: "b4", method: "GET", target: "/missing", header: "Connection: close\r\n"},
			},
		},
	}
	n := 0
	for _, conv := range convs {
		for _, b := range conv {
			n += len(b)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conversation(tb, addr, conv...)
		}()
	}
	wg.Wait()
	return n
}

// TestSniffMatchesTap runs real traffic through the tap in front of a real
// legacy server while sniff watches the tap's port on the loopback
// interface: every exchange is captured by both, and the events are equal
// field for field but for id, timings and source.
func TestSniffMatchesTap(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { testenv.VerifyNone(t, before) }) // registered first: runs after every other cleanup
	legacy := httptest.NewServer(http.HandlerFunc(legacyHandler))
	defer legacy.Close()
	cfg := publisher.Config{MaxBody: 1 << 20}
	tapSink := newSink(t, cfg)
	tap, err := publisher.NewTap(tapSink.c, publisher.TapConfig{Upstream: legacy.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	front := httptest.NewServer(tap)
	defer front.Close()
	u, _ := url.Parse(front.URL)
	port, _ := strconv.Atoi(u.Port())

	sniffSink := newSink(t, cfg)
	sn := newSniffer(t, sniffSink, Config{Port: port})
	live, err := OpenLive("lo", port, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sn.Run(ctx, live) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	}()

	n := traffic(t, u.Host)
	waitFor(t, 60*time.Second, func() bool {
		return tapSink.c.Stats().Published == int64(n) && sniffSink.c.Stats().Published == int64(n)
	}, func() string {
		return fmt.Sprintf("%d exchanges: tap published %+v, sniff %+v (capturer %+v)", n, tapSink.c.Stats(), sn.Stats(), sniffSink.c.Stats())
	})
	tapEvs := byRequestID(t, tapSink.events(t))
	sniffEvs := byRequestID(t, sniffSink.events(t))
	if len(tapEvs) != n || len(sniffEvs) != n {
		t.Fatalf("tap %d events, sniff %d, want %d each", len(tapEvs), len(sniffEvs), n)
	}
	ignore := cmpopts.IgnoreFields(schemas.RequestEvent{}, "ID", "CapturedAt", "Source", "Response.Latency")
	for id, te := range tapEvs {
		se := sniffEvs[id]
		if te.Source != schemas.SourceTap || se.Source != schemas.SourceSniff {
			t.Errorf("%s: sources %q and %q", id, te.Source, se.Source)
		}
		if d := cmp.Diff(te, se, ignore, cmp.Comparer(bytes.Equal)); d != "" {
			t.Errorf("%s: sniff's event differs from the tap's (-tap +sniff):\n%s", id, d)
		}
	}
	// the cases did what they claim
	if a1 := tapEvs["a1"]; a1.UserKey != tapSink.c.UserKey("user-7") || a1.Headers.Get("Authorization") != "" || strings.Contains(a1.Query, "s3cret") {
		t.Errorf("a1 privacy: %+v", a1)
	}
	if a2 := sniffEvs["a2"]; string(a2.Response.Body) != "part 0\npart 1\npart 2\n" || a2.Response.Headers.Get("Trailer-X-Correlation-Id") != "corr-a2" {
		t.Errorf("a2 chunked with trailer: body %q headers %v", a2.Response.Body, a2.Response.Headers)
	}
	if a3 := sniffEvs["a3"]; a3.Response.Headers.Get("Content-Encoding") != "gzip" || a3.Response.Body[0] != 0x1f {
		t.Errorf("a3 gzip: headers %v", a3.Response.Headers)
	}
	for _, id := range []string{"a5", "b2"} {
		ev := sniffEvs[id]
		if len(ev.Body) != 1<<20 || !ev.BodyTruncated || len(ev.Response.Body) != 1<<20 || !ev.Response.BodyTruncated || !bytes.Equal(ev.Body, pattern(1<<20)) {
			t.Errorf("%s 3 MiB both ways: body %d truncated %v, answer %d truncated %v", id, len(ev.Body), ev.BodyTruncated, len(ev.Response.Body), ev.Response.BodyTruncated)
		}
	}
	if b1 := sniffEvs["b1"]; b1.Response.Status != 503 {
		t.Errorf("b1 status %d", b1.Response.Status)
	}
	if got := testenv.MetricSum(t, sniffSink.reg, "shadowcube_sniff_dropped_total"); got != 0 {
		t.Errorf("sniff dropped %v exchanges", got)
	}
}

// TestSniffCountsWhatItCannotFollow: a keep-alive connection opened before
// sniff started (midstream) and a TLS handshake (tls) are counted by reason
// and publish nothing, while a plain exchange next to them is published.
func TestSniffCountsWhatItCannotFollow(t *testing.T) {
	legacy := httptest.NewServer(http.HandlerFunc(legacyHandler))
	defer legacy.Close()
	u, _ := url.Parse(legacy.URL)
	port, _ := strconv.Atoi(u.Port())
	s := newSink(t, publisher.Config{})
	sn := newSniffer(t, s, Config{Port: port})

	// opened, and used, before sniff starts
	early, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	earlyR := bufio.NewReader(early)
	ask := func(id string) {
		t.Helper()
		early.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := early.Write(rawReq{id: id, method: "GET", target: "/api/saju/chart?year=1984"}.bytes()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(earlyR, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ask("before")

	live, err := OpenLive("lo", port, nil, 1<<22)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sn.Run(ctx, live) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	}()

	ask("midstream")
	// a TLS client at a plaintext port: the handshake fails, sniff sees TLS records
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", u.Host, &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
	}
	conversation(t, u.Host, []rawReq{{id: "plain", method: "GET", target: "/api/saju/chart?year=1990"}})

	waitFor(t, 30*time.Second, func() bool {
		return s.c.Stats().Published == 1 &&
			testenv.MetricSum(t, s.reg, "shadowcube_sniff_dropped_total", "reason", ReasonMidstream) == 1 &&
			testenv.MetricSum(t, s.reg, "shadowcube_sniff_dropped_total", "reason", ReasonTLS) == 1
	}, func() string {
		return fmt.Sprintf("published %+v, sniff %+v", s.c.Stats(), sn.Stats())
	})
	evs := byRequestID(t, s.events(t))
	if _, ok := evs["plain"]; !ok || len(evs) != 1 {
		t.Fatalf("events %v, want only the plain exchange", evs)
	}
}
