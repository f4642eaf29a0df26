package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// NATSCluster is a JetStream cluster of embedded servers for one test, each
// node on its own loopback client and route ports with its own store, so a
// test can stop and start single nodes the way a machine fails.
type NATSCluster struct {
	// URL lists every node's client URL, comma-separated: what a client
	// gives nats.Connect to survive the loss of any one node.
	URL   string
	Nodes []*ClusterNode
	name  string
}

// ClusterNode is one server of a NATSCluster.
type ClusterNode struct {
	Name        string // JetStream server name, unique in the cluster (n1, n2, ...)
	ClientPort  int
	clusterPort int
	dir         string
	routes      []string
	clusterName string

	mu     sync.Mutex
	server *server.Server
}

// StartNATSCluster starts an n-node JetStream cluster (n ≥ 3 for R3 streams) on
// free loopback ports and waits until JetStream has a meta leader. It is
// shut down when the test ends. SHADOWCUBE_TEST_NATS_URL is not used: a
// cluster test needs servers it can stop.
func StartNATSCluster(tb testing.TB, n int) *NATSCluster {
	tb.Helper()
	c := &NATSCluster{name: "shadowcube-test"}
	clientPorts, routePorts := freePorts(tb, n), freePorts(tb, n)
	var urls, routes []string
	for i := range n {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	c.URL = strings.Join(urls, ",")
	base := tb.TempDir()
	for i := range n {
		c.Nodes = append(c.Nodes, &ClusterNode{Name: "n" + strconv.Itoa(i+1), ClientPort: clientPorts[i], clusterPort: routePorts[i],
			dir: filepath.Join(base, "n"+strconv.Itoa(i+1)), routes: routes, clusterName: c.name})
	}
	tb.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Stop()
		}
	})
	errs := make(chan error, n)
	for _, nd := range c.Nodes { // together: a node waits for its routes
		go func() { errs <- nd.start() }()
	}
	for range n {
		if err := <-errs; err != nil {
			if infraUp.Load() {
				tb.Fatalf("testenv: NATS cluster: %v", err)
			}
			unavailable(tb, "embedded NATS cluster", err)
		}
	}
	infraUp.Store(true)
	c.WaitReady(tb, time.Minute)
	return c
}

// freePorts reserves n free loopback ports (they are released right away,
// so a server may bind them; a clash fails the start, not silently).
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var lns []net.Listener
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("testenv: free port: %v", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func (nd *ClusterNode) start() error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.server != nil {
		return nil
	}
	var err error
	for range 50 { // the old ports may linger briefly after a stop
		opts := &server.Options{
			ServerName: nd.Name,
			Host:       "127.0.0.1",
			Port:       nd.ClientPort,
			JetStream:  true,
			StoreDir:   nd.dir,
			MaxPayload: schemas.MaxEventSize,
			Cluster:    server.ClusterOpts{Name: nd.clusterName, Host: "127.0.0.1", Port: nd.clusterPort},
			Routes:     server.RoutesFromStr(strings.Join(nd.routes, ",")),
			NoSigs:     true,
			NoLog:      true,
		}
		var srv *server.Server
		srv, err = server.NewServer(opts)
		if err != nil {
			return fmt.Errorf("node %s: %w", nd.Name, err)
		}
		go srv.Start()
		if srv.ReadyForConnections(15 * time.Second) {
			nd.server = srv
			return nil
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		err = fmt.Errorf("node %s: not ready for connections on port %d within 15s", nd.Name, nd.ClientPort)
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Stop shuts the node down as a crash of its machine would look to the
// others (its store stays for Start). Idempotent.
func (nd *ClusterNode) Stop() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.server != nil {
		nd.server.Shutdown()
		nd.server.WaitForShutdown()
		nd.server = nil
	}
}

// Start starts a stopped node again on the same ports and store.
func (nd *ClusterNode) Start(tb testing.TB) {
	tb.Helper()
	if err := nd.start(); err != nil {
		tb.Fatalf("testenv: restart NATS node: %v", err)
	}
}

// Running says whether the node is up.
func (nd *ClusterNode) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.server != nil
}

// Node returns the node of that server name (as JetStream reports it in
// StreamInfo.Cluster.Leader), or nil.
func (c *NATSCluster) Node(name string) *ClusterNode {
	for _, nd := range c.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// WaitReady waits until every running node is current with a JetStream meta
// leader, i.e. the cluster accepts stream and consumer changes.
func (c *NATSCluster) WaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		leader, current := false, true
		for _, nd := range c.Nodes {
			nd.mu.Lock()
			if s := nd.server; s != nil {
				leader = leader || s.JetStreamIsLeader()
				current = current && s.JetStreamIsCurrent()
			}
			nd.mu.Unlock()
		}
		if leader && current {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: NATS cluster has no JetStream meta leader with every node current after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Connect returns a client connection to every node and its JetStream
// handle, closed when the test ends; the client reconnects forever, to
// whichever node is up.
func (c *NATSCluster) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(c.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatalf("testenv: connect to NATS cluster at %s: %v", c.URL, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("testenv: JetStream: %v", err)
	}
	return nc, js
}

// StreamLeader waits until stream has a leader with every replica current
// and returns the leader's server name.
func StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.Stream(rctx, stream)
		cancel()
		if err == nil {
			info := s.CachedInfo()
			if cl := info.Cluster; cl != nil && cl.Leader != "" {
				ok := true
				for _, r := range cl.Replicas {
					ok = ok && r.Current && !r.Offline
				}
				if ok && len(cl.Replicas)+1 == info.Config.Replicas {
					return cl.Leader, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stream %s: no leader with every replica current: %w (last error %v)", stream, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// MoveStreamLeader asks JetStream to make node the leader of stream (a
// leader step-down with that preferred placement) and waits until it is.
func MoveStreamLeader(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, stream, node string) error {
	req := []byte(`{"placement":{"preferred":"` + node + `"}}`)
	for {
		leader, err := StreamLeader(ctx, js, stream)
		if err != nil {
			return err
		}
		if leader == node {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = nc.RequestWithContext(rctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, req)
		cancel()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("move the leader of %s to %s: %w", stream, node, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("move the leader of %s to %s: %w", stream, node, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
