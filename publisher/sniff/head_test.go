package sniff

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// FuzzFastHeads: whatever head the fast path takes, it returns what
// net/http returns for it (requests, and answers to a GET, a POST and a
// HEAD); net/http parses every head the fast path declines.
func FuzzFastHeads(f *testing.F) {
	for _, s := range []string{
		"GET /api/saju/chart/7 HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agent: Go-http-client/1.1\r\nX-User-Id: user-7\r\nAccept-Encoding: gzip\r\n\r\n",
		"POST /api/ai/analyze?x=1&y=%20z HTTP/1.1\r\nhost: svc\r\ncontent-length: 13\r\nX-A: 1\r\nx-a:  2 \r\nConnection: close\r\n\r\n",
		"GET /p%2Fq/r HTTP/1.0\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n",
		"GET / HTTP/1.1\r\nPragma: no-cache\r\n\r\n",
		"GET //x/y HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 103\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 503 \r\nContent-Length: 0\r\nX-Empty:\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	var h headReader
	f.Fuzz(func(t *testing.T, head []byte) {
		end := headerEnd(head)
		if end < 0 {
			return
		}
		head = head[:end]
		if req, ok := h.fastRequest(head); ok {
			want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
			if err != nil {
				t.Fatalf("fast path took a request net/http rejects (%v): %q", err, head)
			}
			sameRequest(t, head, req, want)
		}
		for _, method := range []string{"GET", "POST", "HEAD"} {
			req := &http.Request{Method: method}
			resp, ok := h.fastResponse(head, req)
			if !ok {
				continue
			}
			want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), req)
			if err != nil {
				t.Fatalf("fast path took an answer net/http rejects (%v): %q", err, head)
			}
			sameResponse(t, head, resp, want)
		}
	})
}

func sameRequest(t interface {
	Helper()
	Fatalf(string, ...any)
}, head []byte, got, want *http.Request) {
	t.Helper()
	if got.Method != want.Method || *got.URL != *want.URL || got.Proto != want.Proto || got.ProtoMajor != want.ProtoMajor ||
		got.ProtoMinor != want.ProtoMinor || !reflect.DeepEqual(got.Header, want.Header) || got.ContentLength != want.ContentLength ||
		!reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) || got.Close != want.Close || got.Host != want.Host ||
		!reflect.DeepEqual(got.Trailer, want.Trailer) || got.RequestURI != want.RequestURI {
		t.Fatalf("request %q:\nfast     %+v\nnet/http %+v", head, got, want)
	}
}

func sameResponse(t interface {
	Helper()
	Fatalf(string, ...any)
}, head []byte, got, want *http.Response) {
	t.Helper()
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto || got.ProtoMajor != want.ProtoMajor ||
		got.ProtoMinor != want.ProtoMinor || !reflect.DeepEqual(got.Header, want.Header) || got.ContentLength != want.ContentLength ||
		!reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) || got.Close != want.Close ||
		!reflect.DeepEqual(got.Trailer, want.Trailer) || got.Uncompressed != want.Uncompressed || got.Request != want.Request {
		t.Fatalf("answer %q:\nfast     %+v\nnet/http %+v", head, got, want)
	}
}

// TestFastHeadsTakeOrdinaryTraffic: the heads of the benchmark's traffic
// take the fast path (else it would measure nothing).
func TestFastHeadsTakeOrdinaryTraffic(t *testing.T) {
	var h headReader
	req, ok := h.fastRequest([]byte("GET /api/saju/chart/7 HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agent: Go-http-client/1.1\r\nX-User-Id: user-7\r\nAccept-Encoding: gzip\r\n\r\n"))
	if !ok {
		t.Fatal("request declined")
	}
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 103\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		if _, ok := h.fastResponse([]byte(s), req); !ok {
			t.Errorf("answer declined: %q", s)
		}
	}
}

// TestFastHeadsProperty: heads built from the pieces ordinary and odd
// traffic is made of (names in any case, repeated headers, spaces and tabs
// around values, lengths, encodings, connection options, both versions, any
// status) are parsed by the fast path exactly as by net/http, when it takes
// them; and the ordinary ones it takes.
func TestFastHeadsProperty(t *testing.T) {
	var h headReader
	names := []string{"Host", "host", "HOST", "Content-Length", "content-length", "Transfer-Encoding", "Connection", "connection",
		"Pragma", "Cache-Control", "Trailer", "X-User-Id", "x-user-id", "Accept-Encoding", "Content-Type", "Keep-Alive", "X_Under", "Cookie"}
	values := []string{"", "0", "13", " 13 ", "+1", "close", "keep-alive", "Keep-Alive", "Upgrade, close", "chunked", "Chunked", "gzip, chunked",
		"no-cache", "a=b; c=d", "svc:8080", "\tv\t", "user-7", "application/json", "x y  z"}
	prop := func(rt *rapid.T) {
		var b strings.Builder
		response := rapid.Bool().Draw(rt, "response")
		version := rapid.SampledFrom([]string{"HTTP/1.1", "HTTP/1.0"}).Draw(rt, "version")
		if response {
			b.WriteString(version + " " + strconv.Itoa(rapid.IntRange(100, 599).Draw(rt, "status")) + rapid.SampledFrom([]string{"", " ", " OK", " Not Found"}).Draw(rt, "reason") + "\r\n")
		} else {
			b.WriteString(rapid.SampledFrom([]string{"GET", "POST", "PUT", "HEAD", "OPTIONS", "get"}).Draw(rt, "method") + " " +
				rapid.SampledFrom([]string{"/", "/a/b?c=d", "/p%2Fq", "/x?y=%zz", "/%zz", "/sp ace"}).Draw(rt, "target") + " " + version + "\r\n")
		}
		for range rapid.IntRange(0, 6).Draw(rt, "headers") {
			name, value := rapid.SampledFrom(names).Draw(rt, "name"), rapid.SampledFrom(values).Draw(rt, "value")
			if rapid.Bool().Draw(rt, "framing") { // a header that decides framing or connection, with a value it acts on
				pair := rapid.SampledFrom([][2]string{{"Connection", "close"}, {"connection", "keep-alive"}, {"Transfer-Encoding", "chunked"},
					{"Content-Length", "13"}, {"Content-Length", "0"}, {"Host", "svc"}, {"Pragma", "no-cache"}, {"Trailer", "X-T"}}).Draw(rt, "pair")
				name, value = pair[0], pair[1]
			}
			b.WriteString(name + ":" + rapid.SampledFrom([]string{"", " ", "  ", "\t"}).Draw(rt, "space") + value + "\r\n")
		}
		b.WriteString("\r\n")
		head := []byte(b.String())
		if !response {
			want, wantErr := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
			req, ok := h.fastRequest(head)
			switch {
			case ok && wantErr != nil:
				rt.Fatalf("fast path took a request net/http rejects (%v): %q", wantErr, head)
			case ok:
				sameRequest(rt, head, req, want)
			}
			return
		}
		for _, method := range []string{"GET", "HEAD"} {
			req := &http.Request{Method: method}
			want, wantErr := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), req)
			resp, ok := h.fastResponse(head, req)
			switch {
			case ok && wantErr != nil:
				rt.Fatalf("fast path took an answer net/http rejects (%v): %q", wantErr, head)
			case ok:
				sameResponse(rt, head, resp, want)
			}
		}
	}
	// rapid runs 100 cases a call; the cases that matter (a framing header
	// with the value it acts on, on the right version) are a few in a
	// hundred, and a case costs microseconds
	for range 30 {
		rapid.Check(t, prop)
	}
}

// TestHeadsLongerThanTheReader: heads the fast path declines go to
// net/http through a reused 4 KiB reader, which must not cut long lines.
func TestHeadsLongerThanTheReader(t *testing.T) {
	var h headReader
	long := strings.Repeat("v", 10000)
	head := []byte("GET /x?" + long + " HTTP/1.1\r\nHost: svc\r\nPragma: no-cache\r\nX-Long: " + long + "\r\n\r\n")
	for range 2 { // the second time through the reused reader
		req, err := h.parseRequestHead(head)
		if err != nil {
			t.Fatal(err)
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatal(err)
		}
		sameRequest(t, head, req, want)
		if req.Header.Get("X-Long") != long || req.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("header %v", req.Header)
		}
	}
	resp, err := h.parseResponseHead([]byte("HTTP/1.1 200 OK\r\nPragma: no-cache\r\nX-Long: "+long+"\r\nContent-Length: 3\r\n\r\n"), &http.Request{Method: "GET"})
	if err != nil || resp.Header.Get("X-Long") != long || resp.ContentLength != 3 {
		t.Fatalf("answer %+v, %v", resp, err)
	}
}
