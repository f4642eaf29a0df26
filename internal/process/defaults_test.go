package process

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestMetricsBindLoopbackByDefault: with no SHADOWCUBE_METRICS_ADDR the
// metrics and health server listens on the loopback interface only (it used
// to listen on every interface, :9090).
func TestMetricsBindLoopbackByDefault(t *testing.T) {
	var c Common
	if err := Load(&c); err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(c.MetricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("default SHADOWCUBE_METRICS_ADDR %q does not bind a loopback address", c.MetricsAddr)
	}
	// What the default binds: an ops server on the default host listens on
	// loopback (a free port, so the test never clashes with a real 9090).
	ops, err := StartOpsServer(net.JoinHostPort(host, "0"), NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close(t.Context())
	if a := ops.ln.Addr().(*net.TCPAddr); !a.IP.IsLoopback() {
		t.Fatalf("ops server listens on %s", a)
	}
}

// TestStartupTimeout: SHADOWCUBE_STARTUP_TIMEOUT defaults to 10s, reaches
// the NATS settings, and a bad value is an error naming the variable.
func TestStartupTimeout(t *testing.T) {
	var c Common
	if err := Load(&c); err != nil {
		t.Fatal(err)
	}
	if d, err := c.StartupTimeout(); err != nil || d != 10*time.Second {
		t.Fatalf("default startup timeout %s, %v; want 10s", d, err)
	}
	if got := c.NATS("x").ConnectTimeout; got != 10*time.Second {
		t.Fatalf("NATS ConnectTimeout %s, want 10s", got)
	}
	for _, bad := range []string{"-1s", "0s", "soon"} {
		t.Setenv("SHADOWCUBE_STARTUP_TIMEOUT", bad)
		var c Common
		err := Load(&c)
		if err == nil {
			err = c.Validate()
		}
		var ee *EnvError
		if !errors.As(err, &ee) || ee.Var != "SHADOWCUBE_STARTUP_TIMEOUT" {
			t.Fatalf("SHADOWCUBE_STARTUP_TIMEOUT=%s: got %v, want an error naming the variable", bad, err)
		}
	}
}
