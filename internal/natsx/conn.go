package natsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// Config says where NATS is. An empty URL starts an embedded JetStream server
// in this process, storing its data under DataDir.
type Config struct {
	URL      string // nats://host:4222; empty = embedded server
	Creds    string // credentials file (JWT + nkey seed)
	NKeyFile string // nkey seed file
	TLSCA    string // CA bundle to verify the server
	TLSCert  string // client certificate (mutual TLS)
	TLSKey   string // client key
	Name     string // connection name shown by the server

	DataDir      string // embedded server store; default <user cache dir>/shadowcube/nats
	EmbeddedHost string // embedded server listen host; default 127.0.0.1
	EmbeddedPort int    // embedded server port; 0 = a free port
}

// Conn is a NATS connection with its JetStream handle, plus the embedded
// server it started, if any. Close is idempotent.
type Conn struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	server *server.Server
	once   sync.Once
}

// Connect connects to cfg.URL, or starts an embedded JetStream server when it
// is empty. Errors say which address failed and what to check.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{}
	url := cfg.URL
	if url == "" {
		srv, err := StartEmbedded(EmbeddedConfig{DataDir: cfg.DataDir, Host: cfg.EmbeddedHost, Port: cfg.EmbeddedPort})
		if err != nil {
			return nil, err
		}
		c.server = srv
		url = srv.ClientURL()
		log.Info("started embedded NATS JetStream server", "url", url, "store", srv.StoreDir())
	}
	opts, err := clientOptions(cfg, log)
	if err != nil {
		c.shutdownServer()
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(deadline)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("connect to NATS at %s: %w (is the server running? set SHADOWCUBE_NATS_URL, or leave it empty for an embedded server)", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		c.shutdownServer()
		return nil, fmt.Errorf("open JetStream on %s: %w", url, err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		c.shutdownServer()
		return nil, fmt.Errorf("NATS at %s has no JetStream for this account (start nats-server with -js): %w", url, err)
	}
	c.NC, c.JS = nc, js
	return c, nil
}

func clientOptions(cfg Config, log *slog.Logger) ([]nats.Option, error) {
	name := cfg.Name
	if name == "" {
		name = "shadowcube"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				log.Debug("NATS connection closed")
				return
			}
			log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrl())
		}),
	}
	for _, f := range []struct{ env, path string }{
		{"SHADOWCUBE_NATS_CREDS", cfg.Creds}, {"SHADOWCUBE_NATS_NKEY", cfg.NKeyFile},
		{"SHADOWCUBE_NATS_TLS_CA", cfg.TLSCA}, {"SHADOWCUBE_NATS_TLS_CERT", cfg.TLSCert}, {"SHADOWCUBE_NATS_TLS_KEY", cfg.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", f.env, f.path, err)
		}
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("SHADOWCUBE_NATS_NKEY=%s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.TLSCA != "" || cfg.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pem, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("SHADOWCUBE_NATS_TLS_CA=%s: %w", cfg.TLSCA, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("SHADOWCUBE_NATS_TLS_CA=%s: no PEM certificate found", cfg.TLSCA)
			}
			tc.RootCAs = pool
		}
		if cfg.TLSCert != "" || cfg.TLSKey != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("SHADOWCUBE_NATS_TLS_CERT/SHADOWCUBE_NATS_TLS_KEY: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Embedded reports whether this connection runs its own server.
func (c *Conn) Embedded() bool { return c.server != nil }

// ClientURL is the URL other processes can use to reach the embedded server,
// or the connected URL.
func (c *Conn) ClientURL() string {
	if c.server != nil {
		return c.server.ClientURL()
	}
	return c.NC.ConnectedUrl()
}

// Close drains the connection (flushing pending publishes) and stops the
// embedded server. It is idempotent.
func (c *Conn) Close() {
	c.once.Do(func() {
		if c.NC != nil {
			done := make(chan struct{})
			c.NC.SetClosedHandler(func(*nats.Conn) { close(done) })
			if err := c.NC.Drain(); err != nil {
				c.NC.Close()
			} else {
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					c.NC.Close()
				}
			}
		}
		c.shutdownServer()
	})
}

func (c *Conn) shutdownServer() {
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
	}
}

// EmbeddedConfig configures an in-process JetStream server.
type EmbeddedConfig struct {
	DataDir string // default <user cache dir>/shadowcube/nats
	Host    string // default 127.0.0.1
	Port    int    // 0 = a free port
}

// StartEmbedded starts a JetStream server in this process and waits until it
// accepts connections. Its max payload is schemas.MaxEventSize.
func StartEmbedded(cfg EmbeddedConfig) (*server.Server, error) {
	dir := cfg.DataDir
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: no data directory (set SHADOWCUBE_NATS_DATA_DIR): %w", err)
		}
		dir = filepath.Join(cache, "shadowcube", "nats")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded NATS: data directory %s: %w", dir, err)
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "shadowcube-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: schemas.MaxEventSize,
		NoSigs:     true,
		NoLog:      true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS: server did not become ready within 15s (is the port taken or the data directory locked by another process?)")
	}
	return srv, nil
}
