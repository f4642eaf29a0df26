package process

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
)

func TestLoadAndValidate(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"defaults are valid", nil, ""},
		{"bad log format", map[string]string{"SHADOWCUBE_LOG_FORMAT": "xml"}, "SHADOWCUBE_LOG_FORMAT"},
		{"bad log level", map[string]string{"SHADOWCUBE_LOG_LEVEL": "loud"}, "SHADOWCUBE_LOG_LEVEL"},
		{"bad metrics addr", map[string]string{"SHADOWCUBE_METRICS_ADDR": "9090"}, "SHADOWCUBE_METRICS_ADDR"},
		{"bad port type", map[string]string{"SHADOWCUBE_NATS_PORT": "many"}, "SHADOWCUBE_NATS_PORT"},
		{"bad shutdown timeout", map[string]string{"SHADOWCUBE_SHUTDOWN_TIMEOUT": "-1s"}, "SHADOWCUBE_SHUTDOWN_TIMEOUT"},
		{"bad nats url", map[string]string{"SHADOWCUBE_NATS_URL": "localhost"}, "SHADOWCUBE_NATS_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c Common
			err := Load(&c)
			if err == nil {
				err = c.Validate()
			}
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.MetricsAddr != "127.0.0.1:9090" || c.LogFormat != "text" {
					t.Fatalf("defaults not applied: %+v", c)
				}
				return
			}
			var ee *EnvError
			if !errors.As(err, &ee) || ee.Var != tc.wantVar || !strings.Contains(err.Error(), tc.env[tc.wantVar]) {
				t.Fatalf("want an EnvError naming %s and its value, got %v", tc.wantVar, err)
			}
		})
	}
}

func TestOpsServer(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Add(3)
	ops, err := StartOpsServer("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ready := errors.New("JetStream not reachable")
	ops.AddReady(func(context.Context) error { return ready })
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ops.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "shadowcube_test_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "JetStream not reachable") {
		t.Fatalf("/readyz while not ready = %d %q", code, body)
	}
	ready = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz when ready = %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ops.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + ops.Addr() + "/healthz"); err == nil {
		t.Fatal("server still answers after Close")
	}
}
