package natsx_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
)

const secret = "s3cretPW"

// TestConnectFailsFastRedacted: one start-up attempt, bounded by
// ConnectTimeout even when the caller's context allows 30 s (what every
// command passes), for a closed port and for a port that accepts but is not
// NATS; the error names the URL with its password redacted and says what to
// check. Before: the silent port hung for the caller's 30 s, and both errors
// printed the password.
func TestConnectFailsFastRedacted(t *testing.T) {
	silent, accepted := testenv.SilentPort(t)
	for _, tc := range []struct {
		name string
		port int
	}{{"closed port", testenv.ClosedPort(t)}, {"not NATS", silent}} {
		t.Run(tc.name, func(t *testing.T) {
			log, buf := testenv.CaptureLogger(t)
			url := fmt.Sprintf("nats://shadow:%s@127.0.0.1:%d?token=%s", secret, tc.port, secret)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const bound = 2 * time.Second
			start := time.Now()
			conn, err := natsx.Connect(ctx, natsx.Config{URL: url, ConnectTimeout: bound}, log)
			took := time.Since(start)
			if err == nil {
				conn.Close()
				t.Fatal("connected to a port without a NATS server")
			}
			// The bound is what ends the attempt; the slack only absorbs a
			// loaded machine, far below the caller's 30 s.
			if took > bound+10*time.Second {
				t.Fatalf("Connect took %s, bound %s", took, bound)
			}
			msg := err.Error()
			for _, want := range []string{fmt.Sprintf("nats://shadow:xxxxx@127.0.0.1:%d", tc.port), "SHADOWCUBE_NATS_URL", "SHADOWCUBE_STARTUP_TIMEOUT", "JetStream"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, secret) || strings.Contains(buf.String(), secret) {
				t.Fatalf("password in error or log:\nerror: %s\nlog: %s", msg, buf.String())
			}
			t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
		})
	}
	if accepted() == 0 {
		t.Fatal("the silent port accepted no connection: the not-NATS case did not reach it")
	}
}

// TestReconnectLogRedacted: a connection with a password in its URL logs its
// disconnect, failed reconnect attempts and reconnect without the password,
// and counts them.
func TestReconnectLogRedacted(t *testing.T) {
	n := testenv.StartNATS(t)
	log, buf := testenv.CaptureLogger(t)
	url := strings.Replace(n.URL, "nats://", "nats://shadow:"+secret+"@", 1)
	if url == n.URL {
		t.Skipf("NATS URL %s has no nats:// scheme", n.URL)
	}
	reg := prometheus.NewRegistry()
	conn, err := natsx.Connect(testenv.Context(t, time.Minute), natsx.Config{URL: url, Registerer: reg}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if strings.Contains(conn.ClientURL(), secret) {
		t.Fatalf("ClientURL shows the password: %s", conn.ClientURL())
	}
	before := testenv.Metric(t, reg, "shadowcube_nats_reconnects_total")
	n.Shutdown()
	// Failed attempts while the server is down: wait for one logged.
	waitFor(t, func() bool { return strings.Contains(buf.String(), "NATS reconnect attempt failed") }, "a failed reconnect attempt logged")
	n.Start(t)
	waitFor(t, func() bool { return strings.Contains(buf.String(), "NATS reconnected") }, "the reconnect logged")
	if got := testenv.Metric(t, reg, "shadowcube_nats_reconnects_total"); got != before+1 {
		t.Fatalf("shadowcube_nats_reconnects_total = %v, want %v", got, before+1)
	}
	if testenv.Metric(t, reg, "shadowcube_nats_reconnect_attempts_total") < 1 {
		t.Fatal("no failed reconnect attempt counted")
	}
	logs := buf.String()
	if strings.Contains(logs, secret) {
		t.Fatalf("password in the log:\n%s", logs)
	}
	if !strings.Contains(logs, "shadow:xxxxx@") {
		t.Fatalf("log does not name the redacted URL:\n%s", logs)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:pw@h:4222":                  "nats://u:xxxxx@h:4222",
		"nats://tok@h:4222":                   "nats://xxxxx@h:4222",
		"nats://h:4222?auth_token=pw#frag":    "nats://h:4222",
		"h:4222":                              "nats://h:4222",
		"nats://a:pw@h1:1, nats://b:pw2@h2:2": "nats://a:xxxxx@h1:1,nats://b:xxxxx@h2:2",
		"tls://u:p%40ss@h":                    "tls://u:xxxxx@h",
	} {
		if got := natsx.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
