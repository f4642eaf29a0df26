package testenv

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
)

// NATS is a JetStream server for one test: embedded on a free port with a
// temporary store, or the server of SHADOWCUBE_TEST_NATS_URL.
type NATS struct {
	URL    string
	server *server.Server
	dir    string
	port   int
}

// StartNATS starts an embedded JetStream server for this test. It is shut
// down when the test ends.
func StartNATS(tb testing.TB) *NATS {
	tb.Helper()
	if u := os.Getenv("SHADOWCUBE_TEST_NATS_URL"); u != "" {
		return &NATS{URL: u}
	}
	n := &NATS{dir: tb.TempDir()}
	n.start(tb)
	tb.Cleanup(n.Shutdown)
	return n
}

func (n *NATS) start(tb testing.TB) {
	tb.Helper()
	var err error
	for i := 0; i < 50; i++ { // the old port may linger briefly after a restart
		var srv *server.Server
		srv, err = natsx.StartEmbedded(natsx.EmbeddedConfig{DataDir: n.dir, Port: n.port})
		if err == nil {
			n.server = srv
			n.URL = srv.ClientURL()
			n.port = srv.Addr().(*net.TCPAddr).Port
			infraUp.Store(true)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n.port != 0 || infraUp.Load() {
		// A restart mid-test (or a start after other servers ran): the
		// fault test cannot go on, and a skip would hide that.
		tb.Fatalf("embedded NATS did not start on port %d: %v", n.port, err)
	}
	unavailable(tb, "embedded NATS", err)
}

// Shutdown stops the server (as an outage would). Idempotent.
func (n *NATS) Shutdown() {
	if n.server != nil {
		n.server.Shutdown()
		n.server.WaitForShutdown()
		n.server = nil
	}
}

// Restart stops the server and starts it again on the same port and store,
// so clients reconnect and JetStream data survives.
func (n *NATS) Restart(tb testing.TB) {
	tb.Helper()
	if n.dir == "" {
		tb.Fatalf("testenv: cannot restart NATS from SHADOWCUBE_TEST_NATS_URL; unset it to use an embedded server")
	}
	n.Shutdown()
	n.start(tb)
}

// Start starts a server stopped by Shutdown, on the same port and store.
func (n *NATS) Start(tb testing.TB) {
	tb.Helper()
	if n.server == nil {
		n.start(tb)
	}
}

// Connect returns a client connection and JetStream handle, closed when the
// test ends. The client reconnects forever, so it survives Restart.
func (n *NATS) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatalf("testenv: connect to NATS at %s: %v", n.URL, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("testenv: JetStream: %v", err)
	}
	return nc, js
}

// Context returns a context cancelled at the end of the test (or after d).
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// PublishBacklog publishes n messages, message(i) giving the subject and data
// of the i-th, with async publish in windows of 1,000, and returns once
// JetStream acknowledged them all.
func PublishBacklog(tb testing.TB, js jetstream.JetStream, n int, message func(i int) (subject string, data []byte)) {
	tb.Helper()
	for i := range n {
		subject, data := message(i)
		if _, err := js.PublishAsync(subject, data); err != nil {
			tb.Fatalf("publish backlog message %d: %v", i, err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				tb.Fatalf("backlog publish did not complete (%d of %d sent)", i+1, n)
			}
		}
	}
}

// WaitConsumer polls until the durable consumer exists on stream (a stage's
// Run creates it during set-up) and returns it; it fails the test after a
// minute.
func WaitConsumer(tb testing.TB, ctx context.Context, js jetstream.JetStream, stream, durable string) jetstream.Consumer {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := js.Consumer(ctx, stream, durable)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			tb.Fatalf("consumer %s/%s not created within a minute: %v", stream, durable, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
