package webui

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
)

// TestGracefulShutdown: Close lets a request in flight finish and answer
// (within the shutdown timeout), refuses new connections, and, when the
// timeout ends first, closes the connection and reports it.
func TestGracefulShutdown(t *testing.T) {
	url := testenv.Postgres(t).NewDatabase(t)
	st, err := comparator.OpenStore(testenv.Context(t, time.Minute), comparator.StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	// startRequest opens a connection and sends a POST whose body is not
	// complete yet: the request is in flight.
	startRequest := func(t *testing.T, addr string) net.Conn {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write([]byte("POST /login HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\ntoken")); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	// inFlight waits until the server counts the connection active: a
	// request it has started to read.
	waitActive := func(t *testing.T, srv *Server) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for srv.active.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the request never became active")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("drains", func(t *testing.T) {
		srv := startUI(t, st, Config{})
		conn := startRequest(t, srv.Addr())
		waitActive(t, srv)
		closed := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			closed <- srv.Close(ctx)
		}()
		// New connections are refused once the listener is closed.
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatal("still accepting connections 30s after Close began")
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) with a request in flight", err)
		default:
		}
		if _, err := conn.Write([]byte("=abcd")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("the request in flight got no answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden { // read-only: login refused
			t.Errorf("in-flight request answered %d, want 403", resp.StatusCode)
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("Close did not return after the request finished")
		}
	})

	t.Run("timeout", func(t *testing.T) {
		ignore := goleak.IgnoreCurrent()
		srv, err := Start(context.Background(), Config{Addr: "127.0.0.1:0"}, Deps{Store: st, Log: testenv.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		conn := startRequest(t, srv.Addr())
		waitActive(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err = srv.Close(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close with a stuck request: %v, want the deadline", err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("the stuck connection was not closed: %v", err)
		}
		conn.Close()
		testenv.VerifyNone(t, ignore)
	})
}
