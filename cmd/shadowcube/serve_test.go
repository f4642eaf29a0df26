package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
)

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeUsage: bad settings are usage errors (exit 2) naming the
// variable or flag.
func TestServeUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no store", map[string]string{"SHADOWCUBE_STORE_DATABASE_URL": ""}, nil, "SHADOWCUBE_STORE_DATABASE_URL"},
		{"bad refresh", map[string]string{"SHADOWCUBE_SERVE_REFRESH": "-1s"}, nil, "SHADOWCUBE_SERVE_REFRESH"},
		{"bad refresh flag", nil, []string{"--refresh", "48h"}, "--refresh"},
		{"tls cert alone", map[string]string{"SHADOWCUBE_SERVE_TLS_CERT": "/x.pem"}, nil, "SHADOWCUBE_SERVE_TLS_KEY"},
		{"empty addr", nil, []string{"--addr", ""}, "SHADOWCUBE_SERVE_ADDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SHADOWCUBE_STORE_DATABASE_URL", "postgres://127.0.0.1:1/none")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runCLI(t, append([]string{"serve"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s", code, errOut, tc.want)
			}
		})
	}
}

// TestServeRunsAndStops: serve answers /healthz and the pages, never
// prints the UI token, and stops cleanly (exit 0) when its context ends.
func TestServeRunsAndStops(t *testing.T) {
	url := testenv.Postgres(t).NewDatabase(t)
	const token = "serve-cli-secret-token-81f2"
	t.Setenv("SHADOWCUBE_STORE_DATABASE_URL", url)
	t.Setenv("SHADOWCUBE_UI_TOKEN", token)
	t.Setenv("SHADOWCUBE_METRICS_ADDR", "")
	t.Setenv("SHADOWCUBE_LOG_LEVEL", "debug")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, &out, &errOut) }()
	addrRe := regexp.MustCompile(`serving the report on (http://[0-9.:]+)/`)
	var base string
	deadline := time.Now().Add(60 * time.Second)
	for base == "" && time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before serving: %s", code, errOut.String())
		default:
		}
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if base == "" {
		t.Fatalf("serve printed no address in 60s: %q %q", out.String(), errOut.String())
	}
	for _, path := range []string{"/healthz", "/", "/audit", "/accepted.yaml"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if strings.Contains(string(b), token) {
			t.Errorf("GET %s shows the UI token", path)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d after its context ended: %s", code, errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop within 60s of its context ending")
	}
	if strings.Contains(out.String()+errOut.String(), token) {
		t.Fatal("serve printed the UI token")
	}
	if !strings.Contains(errOut.String(), "web UI stopped") {
		t.Errorf("no stop logged: %s", errOut.String())
	}
}
