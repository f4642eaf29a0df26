package publisher

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// legacyHandler is the real upstream of the tap tests.
func legacyHandler(large []byte) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/saju/chart/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=SECRET-SESSION")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		fmt.Fprintf(w, `{"id":%q,"day_pillar":"庚子","user":%q}`, r.PathValue("id"), r.Header.Get("X-User-Id"))
	})
	mux.HandleFunc("POST /api/saju/chart", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(bytes.ToUpper(body))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc123")
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			// A small answer: a large answer to a large upload through
			// httputil.ReverseProxy is sometimes cut (bare proxy too).
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "got %d\n", n)
			return
		}
		w.Write(large)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		http.Error(w, "legacy is sad", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers only after the proxy gave up
		w.Write([]byte("late"))
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "other %s %s traceparent=%s", r.Method, r.URL.RequestURI(), r.Header.Get("Traceparent"))
	})
	return mux
}

type answer struct {
	status  int
	header  http.Header
	body    []byte
	trailer http.Header
	proto   string
}

func fetch(t *testing.T, client *http.Client, method, u string, body []byte, hdr map[string]string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return answer{status: resp.StatusCode, header: h, body: b, trailer: resp.Trailer, proto: resp.Proto}
}

func sameAnswer(t *testing.T, what string, want, got answer) {
	t.Helper()
	if want.status != got.status {
		t.Errorf("%s: status %d, want %d", what, got.status, want.status)
	}
	if fmt.Sprint(want.header) != fmt.Sprint(got.header) {
		t.Errorf("%s: headers\n got %v\nwant %v", what, got.header, want.header)
	}
	if !bytes.Equal(want.body, got.body) {
		t.Errorf("%s: body differs (%d bytes, want %d)", what, len(got.body), len(want.body))
	}
	if fmt.Sprint(want.trailer) != fmt.Sprint(got.trailer) {
		t.Errorf("%s: trailers %v, want %v", what, got.trailer, want.trailer)
	}
}

func TestTapByteIdentical(t *testing.T) {
	large := make([]byte, 3<<20+17)
	rand.Read(large)
	up := httptest.NewServer(legacyHandler(large))
	defer up.Close()
	e := newEnv(t, Config{Routes: testService(t), MaxBody: 64 << 10, Privacy: PrivacyConfig{AllowHeaders: []string{"X-Multi", "X-Checksum"}}})

	// A generous header timeout for every case but the timeout case, whose
	// own proxies give up after 300 ms (its upstream never answers): a
	// loaded machine cannot turn an ordinary case into a timeout.
	newTransport := func(timeout time.Duration) *http.Transport {
		tr, err := NewTransport(false, UpstreamTLS{})
		if err != nil {
			t.Fatal(err)
		}
		tr.ResponseHeaderTimeout = timeout
		return tr
	}
	upURL, _ := url.Parse(up.URL)
	newPair := func(timeout time.Duration) (tapURL, bareURL string) {
		tap, err := NewTap(e.c, TapConfig{Upstream: up.URL, Transport: newTransport(timeout), Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tap.Close() })
		tapSrv := httptest.NewServer(tap)
		t.Cleanup(tapSrv.Close)
		bare := httputil.NewSingleHostReverseProxy(upURL)
		bare.Transport = newTransport(timeout)
		bareSrv := httptest.NewServer(bare)
		t.Cleanup(bareSrv.Close)
		return tapSrv.URL, bareSrv.URL
	}
	tapURL, bareURL := newPair(time.Minute)
	tapShort, bareShort := newPair(300 * time.Millisecond)

	client := &http.Client{}
	post := []byte(`{"birth_date":"1988-02-15","birth_time":"23:30"}`)
	cases := []struct {
		name, method, path string
		body               []byte
		viaBare            bool // compare with a bare reverse proxy (the upstream itself gives no answer)
	}{
		{"get", "GET", "/api/saju/chart/42?lang=ko", nil, false},
		{"post", "POST", "/api/saju/chart", post, false},
		{"chunked with trailer", "GET", "/chunked", nil, false},
		{"large response", "GET", "/large", nil, false},
		{"large request", "POST", "/large", large, false},
		{"5xx", "GET", "/fail", nil, false},
		{"other path", "GET", "/x/y", nil, false},
		{"upstream timeout", "GET", "/slow", nil, true}, // through the 300 ms proxies
		{"upstream reset", "GET", "/reset", nil, true},
	}
	hdr := map[string]string{"X-User-Id": "user-7", "Authorization": "Bearer SECRET-TOKEN", "Cookie": "sid=SECRET-COOKIE",
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Truth-Label": "fire"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref, via := up.URL, tapURL
			if tc.viaBare {
				ref = bareURL
			}
			if tc.path == "/slow" {
				ref, via = bareShort, tapShort
			}
			want := fetch(t, client, tc.method, ref+tc.path, tc.body, hdr)
			got := fetch(t, client, tc.method, via+tc.path, tc.body, hdr)
			sameAnswer(t, tc.name, want, got)
		})
	}
	e.flush(t)
	evs := events(t, e.js)
	byPath := map[string]schemas.RequestEvent{}
	for _, ev := range evs {
		byPath[ev.Method+" "+ev.Path] = ev
	}
	if len(evs) != 7 { // the timeout and the reset have no legacy answer to capture
		t.Errorf("captured %d events, want 7: %v", len(evs), keys(byPath))
	}
	get := byPath["GET /api/saju/chart/42"]
	if get.Route != "/api/saju/chart/{id}" || get.Query != "lang=ko" || get.Source != schemas.SourceTap {
		t.Errorf("GET event: route %q query %q source %q", get.Route, get.Query, get.Source)
	}
	if get.TraceParent != hdr["Traceparent"] || get.Headers.Get("Traceparent") != hdr["Traceparent"] {
		t.Errorf("traceparent not kept: %q / %q", get.TraceParent, get.Headers.Get("Traceparent"))
	}
	if get.Headers.Get("X-Truth-Label") != "fire" {
		t.Errorf("X-Truth-Label not kept: %v", get.Headers)
	}
	if get.UserKey != e.c.UserKey("user-7") || !strings.HasPrefix(get.UserKey, UserKeyPrefix) {
		t.Errorf("user key %q, want %q", get.UserKey, e.c.UserKey("user-7"))
	}
	for _, h := range []string{"Authorization", "Cookie", "X-User-Id"} {
		if get.Headers.Get(h) != "" {
			t.Errorf("header %s published", h)
		}
	}
	if get.Response.Headers.Get("Set-Cookie") != "" || len(get.Response.Headers["X-Multi"]) != 2 {
		t.Errorf("response headers: %v", get.Response.Headers)
	}
	if get.Response.Status != 200 || !strings.Contains(string(get.Response.Body), `"day_pillar":"庚子"`) {
		t.Errorf("GET response: %d %s", get.Response.Status, get.Response.Body)
	}
	p := byPath["POST /api/saju/chart"]
	if !bytes.Equal(p.Body, post) || !bytes.Equal(p.Response.Body, bytes.ToUpper(post)) || p.Response.Status != 201 {
		t.Errorf("POST event: body %q response %d %q", p.Body, p.Response.Status, p.Response.Body)
	}
	ch := byPath["GET /chunked"]
	if ch.Route != OtherRoute || !strings.HasPrefix(string(ch.Response.Body), "chunk 0\n") || ch.Response.Headers.Get("Trailer-X-Checksum") != "abc123" {
		t.Errorf("chunked event: route %q body %q headers %v", ch.Route, ch.Response.Body, ch.Response.Headers)
	}
	lg := byPath["GET /large"]
	if !lg.Response.BodyTruncated || len(lg.Response.Body) != 64<<10 || !bytes.Equal(lg.Response.Body, large[:64<<10]) {
		t.Errorf("large response: truncated %v, %d bytes", lg.Response.BodyTruncated, len(lg.Response.Body))
	}
	lp := byPath["POST /large"]
	if !lp.BodyTruncated || len(lp.Body) != 64<<10 {
		t.Errorf("large request: truncated %v, %d bytes", lp.BodyTruncated, len(lp.Body))
	}
	if f := byPath["GET /fail"]; f.Response.Status != 503 {
		t.Errorf("5xx captured as %d", f.Response.Status)
	}
	if got := e.c.m.drops.WithLabelValues(DropUpstream); counterValue(got) != 2 {
		t.Errorf("upstream_error drops = %v, want 2", counterValue(got))
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTapH2CUpstream proves the tap talks HTTP/2 without TLS to an h2c upstream.
func TestTapH2CUpstream(t *testing.T) {
	var proto string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto = r.Proto
		io.WriteString(w, "hello over "+r.Proto)
	})
	up := httptest.NewUnstartedServer(h)
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetHTTP1(true)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Start()
	defer up.Close()
	e := newEnv(t, Config{})
	tap, err := NewTap(e.c, TapConfig{Upstream: up.URL, H2C: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()
	a := fetch(t, http.DefaultClient, "GET", srv.URL+"/h", nil, nil)
	if proto != "HTTP/2.0" || string(a.body) != "hello over HTTP/2.0" {
		t.Fatalf("upstream saw %q, user got %q", proto, a.body)
	}
	e.flush(t)
	if evs := events(t, e.js); len(evs) != 1 || string(evs[0].Response.Body) != "hello over HTTP/2.0" {
		t.Fatalf("events: %+v", evs)
	}
}

// TestTapTLSUpstream proves the TLS options: the upstream's CA is trusted
// only when configured.
func TestTapTLSUpstream(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	defer up.Close()
	e := newEnv(t, Config{})
	tr, err := NewTransport(false, UpstreamTLS{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	tap, _ := NewTap(e.c, TapConfig{Upstream: up.URL, Transport: tr})
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()
	if a := fetch(t, http.DefaultClient, "GET", srv.URL+"/", nil, nil); a.status != 200 || string(a.body) != "secure" {
		t.Fatalf("got %d %q", a.status, a.body)
	}
	// Without the CA the same upstream must be refused for its certificate,
	// not for any other reason: the tap's log says why it answered 502.
	logBuf := &testenv.Buffer{}
	strict, _ := NewTap(e.c, TapConfig{Upstream: up.URL, Log: slogText(logBuf)})
	defer strict.Close()
	srv2 := httptest.NewServer(strict)
	defer srv2.Close()
	if a := fetch(t, http.DefaultClient, "GET", srv2.URL+"/", nil, nil); a.status != http.StatusBadGateway {
		t.Fatalf("unverified upstream certificate accepted: %d", a.status)
	}
	if l := logBuf.String(); !strings.Contains(l, "tls: failed to verify certificate") || !strings.Contains(l, "x509") {
		t.Fatalf("502 without a certificate rejection in the log:\n%s", l)
	}
}
