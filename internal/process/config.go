package process

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/heal7/shadowcube/internal/natsx"
)

// EnvPrefix is the prefix of every environment variable shadowcube reads.
const EnvPrefix = "SHADOWCUBE"

// Common is the configuration every subcommand shares.
type Common struct {
	NATSURL      string `envconfig:"NATS_URL" desc:"NATS URL; empty starts an embedded JetStream server"`
	NATSCreds    string `envconfig:"NATS_CREDS" desc:"NATS credentials file"`
	NATSNKey     string `envconfig:"NATS_NKEY" desc:"NATS nkey seed file"`
	NATSTLSCA    string `envconfig:"NATS_TLS_CA" desc:"CA bundle that signs the NATS server certificate"`
	NATSTLSCert  string `envconfig:"NATS_TLS_CERT" desc:"client certificate for NATS mutual TLS"`
	NATSTLSKey   string `envconfig:"NATS_TLS_KEY" desc:"client key for NATS mutual TLS"`
	NATSDataDir  string `envconfig:"NATS_DATA_DIR" desc:"data directory of the embedded NATS server (default: user cache dir)"`
	NATSPort     int    `envconfig:"NATS_PORT" min:"0" max:"65535" desc:"port of the embedded NATS server (0 = free port)"`
	MetricsAddr  string `envconfig:"METRICS_ADDR" default:"127.0.0.1:9090" desc:"address for /metrics, /healthz and /readyz (loopback only by default; :9090 for every interface); empty disables"`
	LogFormat    string `envconfig:"LOG_FORMAT" default:"text" desc:"log format: text or json"`
	LogLevel     string `envconfig:"LOG_LEVEL" default:"info" desc:"log level: debug, info, warn or error"`
	ShutdownWait string `envconfig:"SHUTDOWN_TIMEOUT" default:"20s" desc:"how long a graceful stop may drain before exiting"`
	StartupWait  string `envconfig:"STARTUP_TIMEOUT" default:"10s" desc:"bound of the one connection attempt at start-up (NATS, source database)"`
}

// EnvError names an environment variable with a bad value.
type EnvError struct {
	Var   string
	Value string
	Msg   string
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Msg)
}

// Load reads SHADOWCUBE_* variables into spec (a pointer to a struct with
// envconfig tags) and checks the `min:"N"` / `max:"N"` tags of its numeric
// fields (ints, floats, durations such as min:"1s"): every numeric field of
// an env struct carries at least one, so a bad number is an error, never
// silently replaced by a default. Errors name the variable, the bad value
// and, for a number out of range, the allowed range.
func Load(spec any) error {
	if err := envconfig.Process(EnvPrefix, spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return &EnvError{Var: pe.KeyName, Value: pe.Value, Msg: fmt.Sprintf("want a value of type %s", pe.TypeName)}
		}
		return fmt.Errorf("read environment: %w", err)
	}
	return checkBounds(EnvPrefix, spec)
}

// Validate checks the common settings.
func (c *Common) Validate() error {
	var errs []error
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, &EnvError{Var: "SHADOWCUBE_LOG_FORMAT", Value: c.LogFormat, Msg: "want text or json"})
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, &EnvError{Var: "SHADOWCUBE_LOG_LEVEL", Value: c.LogLevel, Msg: "want debug, info, warn or error"})
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, &EnvError{Var: "SHADOWCUBE_METRICS_ADDR", Value: c.MetricsAddr, Msg: "want host:port, e.g. 127.0.0.1:9090"})
		}
	}
	if c.NATSURL != "" && !strings.Contains(c.NATSURL, "://") && !strings.Contains(c.NATSURL, ":") {
		errs = append(errs, &EnvError{Var: "SHADOWCUBE_NATS_URL", Value: c.NATSURL, Msg: "want a URL like nats://127.0.0.1:4222, or empty for an embedded server"})
	}
	if c.NATSPort < 0 || c.NATSPort > 65535 {
		errs = append(errs, &EnvError{Var: "SHADOWCUBE_NATS_PORT", Value: fmt.Sprint(c.NATSPort), Msg: "want 0-65535"})
	}
	if _, err := c.ShutdownTimeout(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.StartupTimeout(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// StartupTimeout parses SHADOWCUBE_STARTUP_TIMEOUT: the bound of the one
// connection attempt a command makes at start-up (an unreachable NATS or
// database fails the start within it; once running, connections are retried).
func (c *Common) StartupTimeout() (time.Duration, error) {
	d, err := time.ParseDuration(c.StartupWait)
	if err != nil || d <= 0 {
		return 0, &EnvError{Var: "SHADOWCUBE_STARTUP_TIMEOUT", Value: c.StartupWait, Msg: "want a positive duration like 10s"}
	}
	return d, nil
}

// NATS returns the NATS connection settings.
func (c *Common) NATS(name string) natsx.Config {
	startup, _ := c.StartupTimeout() // 0 (natsx's default) when invalid; Validate reports it
	return natsx.Config{
		URL: c.NATSURL, Creds: c.NATSCreds, NKeyFile: c.NATSNKey,
		TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey,
		Name: name, DataDir: c.NATSDataDir, EmbeddedPort: c.NATSPort,
		ConnectTimeout: startup,
	}
}

// Logger builds the process logger.
func (c *Common) Logger(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
