package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProbe: 200 on /healthz is healthy; any other status, a refused
// connection or an empty metrics address is not, with the reason printed.
func TestProbe(t *testing.T) {
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.Path)
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	var out strings.Builder
	if code := run(nil, ":"+port, &out); code != 0 {
		t.Fatalf("healthy process: exit %d (%s)", code, out.String())
	}
	if len(hits) != 1 || hits[0] != "/healthz" {
		t.Fatalf("probe asked %v, want [/healthz] on the metrics port", hits)
	}
	out.Reset()
	if code := run([]string{srv.URL + "/readyz"}, "", &out); code != 1 || !strings.Contains(out.String(), "503") {
		t.Fatalf("503: exit %d, output %q; want 1 naming the status", code, out.String())
	}
	srv.Close()
	out.Reset()
	if code := run(nil, "0.0.0.0:"+port, &out); code != 1 || out.Len() == 0 {
		t.Fatalf("refused: exit %d, output %q; want 1 with the error", code, out.String())
	}
	out.Reset()
	if code := run(nil, "", &out); code != 1 || !strings.Contains(out.String(), "SHADOWCUBE_METRICS_ADDR") {
		t.Fatalf("no metrics address: exit %d, output %q", code, out.String())
	}
	if code := run(nil, "9090", &out); code != 1 {
		t.Fatalf("bad metrics address: exit %d", code)
	}
}
