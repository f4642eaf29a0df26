package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/tlsconf"
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

	// ConnectTimeout bounds the one connection attempt at start-up
	// (SHADOWCUBE_STARTUP_TIMEOUT); default DefaultConnectTimeout. A sooner
	// deadline of Connect's context bounds it too. Once connected, the
	// client reconnects forever with back-off.
	ConnectTimeout time.Duration
	// Registerer, when set, gets the reconnect metrics
	// (shadowcube_nats_reconnect_attempts_total, shadowcube_nats_reconnects_total).
	Registerer prometheus.Registerer

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

// DefaultConnectTimeout bounds the start-up connection attempt unless
// Config.ConnectTimeout says otherwise.
const DefaultConnectTimeout = 10 * time.Second

// Connect connects to cfg.URL, or starts an embedded JetStream server when it
// is empty. It makes one attempt, bounded by cfg.ConnectTimeout and ctx, and
// fails with an error that names the (redacted) URL and what to check; a
// server that accepts the connection but does not speak NATS fails at the
// bound too. URLs are redacted in every error and log line.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bound := cfg.ConnectTimeout
	if bound <= 0 {
		bound = DefaultConnectTimeout
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < bound {
		bound = max(time.Until(deadline), time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
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
	shown := RedactURL(url)
	opts, err := clientOptions(cfg, shown, log)
	if err != nil {
		c.shutdownServer()
		return nil, err
	}
	opts = append(opts, nats.Timeout(bound))
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		done <- result{nc, err}
	}()
	var nc *nats.Conn
	select {
	case r := <-done:
		nc, err = r.nc, r.err
	case <-ctx.Done():
		err = fmt.Errorf("no NATS server answered within %s", bound)
		go func() { // the attempt ends at its own timeout; drop what it made
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
	}
	if err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("connect to NATS at %s: %w (one attempt, bounded by %s: check that a NATS server with JetStream listens at that host and port and that the URL's credentials and TLS settings are right for it; set SHADOWCUBE_NATS_URL, or leave it empty for an embedded server; SHADOWCUBE_STARTUP_TIMEOUT sets the bound)",
			shown, scrub(err, url), bound)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		c.shutdownServer()
		return nil, fmt.Errorf("open JetStream on %s: %w", shown, scrub(err, url))
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		c.shutdownServer()
		return nil, fmt.Errorf("NATS at %s has no JetStream for this account (start nats-server with -js), or did not answer within %s: %w", shown, bound, scrub(err, url))
	}
	c.NC, c.JS = nc, js
	return c, nil
}

// RedactURL returns a NATS URL (or a comma-separated list of them) fit for
// logs and errors: a password or a token in the user part is replaced by
// xxxxx, and query strings and fragments are dropped.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	if s == "" {
		return s
	}
	raw := s
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a user part alone is a token
		}
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.String()
}

// scrub removes the secrets of rawURL (password, token, query) from err's
// text, keeping err when it holds none.
func scrub(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, p := range strings.Split(rawURL, ",") {
		raw := strings.TrimSpace(p)
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			continue
		}
		var secrets []string
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				secrets = append(secrets, pw)
			} else {
				secrets = append(secrets, u.User.Username())
			}
		}
		secrets = append(secrets, u.RawQuery)
		for _, sec := range secrets {
			if sec != "" {
				clean = strings.ReplaceAll(clean, sec, "xxxxx")
			}
		}
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

// reconnectMetrics are shared by every connection of the process.
var (
	reconnectAttempts = prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_nats_reconnect_attempts_total",
		Help: "Failed attempts to reconnect to NATS after a lost connection."})
	reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_nats_reconnects_total",
		Help: "Reconnections to NATS after a lost connection."})
)

// register registers the process-wide reconnect counters on reg. Every
// connection of a process shares them, so finding these very collectors
// already registered is expected; any other conflict is an error.
func register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{reconnectAttempts, reconnects} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) || are.ExistingCollector != c {
				return fmt.Errorf("register NATS metrics: %w", err)
			}
		}
	}
	return nil
}

// reconnectDelay is the back-off between reconnect rounds: 250 ms doubling
// up to 4 s, with jitter.
func reconnectDelay(attempts int) time.Duration {
	d := min(250*time.Millisecond<<min(max(attempts-1, 0), 4), 4*time.Second)
	return d/2 + rand.N(d/2+1)
}

func clientOptions(cfg Config, shown string, log *slog.Logger) ([]nats.Option, error) {
	if err := register(cfg.Registerer); err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = "shadowcube"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				log.Debug("NATS connection closed")
				return
			}
			log.Warn("NATS disconnected; reconnecting with back-off", "url", shown, "err", scrub(err, cfg.URL))
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			reconnectAttempts.Inc()
			log.Warn("NATS reconnect attempt failed", "url", shown, "err", scrub(err, cfg.URL))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			reconnects.Inc()
			log.Info("NATS reconnected", "url", RedactURL(nc.ConnectedUrl()))
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
		tc, err := tlsconf.Client(tlsconf.Files{CA: cfg.TLSCA, Cert: cfg.TLSCert, Key: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("NATS TLS (SHADOWCUBE_NATS_TLS_CA, SHADOWCUBE_NATS_TLS_CERT, SHADOWCUBE_NATS_TLS_KEY): %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Embedded reports whether this connection runs its own server.
func (c *Conn) Embedded() bool { return c.server != nil }

// ClientURL is the URL other processes can use to reach the embedded server,
// or the connected URL with its password redacted (fit for logs).
func (c *Conn) ClientURL() string {
	if c.server != nil {
		return c.server.ClientURL()
	}
	return RedactURL(c.NC.ConnectedUrl())
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
	} else {
		// A taken port would only show as a server that never gets ready.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: port %d: %w", port, err)
		}
		ln.Close()
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
