package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoBinaries means initdb/postgres were not found. Install the PostgreSQL
// server package (Debian: apt-get install postgresql) or put its bin directory
// on PATH.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found: install them (Debian: apt-get install postgresql) or add their bin directory to PATH")

// Options tune the cluster. Zero values give a cluster fit for tests:
// wal_level=logical, 20 replication slots and WAL senders, fsync off.
type Options struct {
	Dir      string            // parent for the data directory; default os.TempDir()
	Settings map[string]string // extra postgresql.conf settings (override defaults)
	Durable  bool              // keep fsync on (benchmarks that compare with disk-bound tools)
}

// Cluster is a running throwaway PostgreSQL cluster. Superuser "postgres",
// trust authentication, listening on 127.0.0.1:Port and a socket in SocketDir.
type Cluster struct {
	Port      int
	DataDir   string
	SocketDir string
	BinDir    string

	root     string
	cred     *syscall.Credential
	settings []string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	logFile  string
	closeMu  sync.Once
}

// FindBinDir returns the directory holding initdb and postgres: PATH first,
// then /usr/lib/postgresql/<newest>/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// Start initialises and starts a cluster. When the process runs as root the
// cluster runs as the "postgres" OS user (PostgreSQL refuses root), in a
// directory that user owns.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(opts.Dir, "shadowcube-pg-")
	if err != nil {
		return nil, fmt.Errorf("throwaway PostgreSQL: temp dir: %w", err)
	}
	c := &Cluster{BinDir: bin, root: root, DataDir: filepath.Join(root, "data"), SocketDir: filepath.Join(root, "sock"), logFile: filepath.Join(root, "postgres.log")}
	fail := func(err error) (*Cluster, error) {
		os.RemoveAll(root)
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("throwaway PostgreSQL: running as root needs the OS user \"postgres\" to run the server: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(root, uid, gid); err != nil {
			return fail(fmt.Errorf("throwaway PostgreSQL: chown %s: %w", root, err))
		}
	}
	if err := c.asOwner(os.Mkdir, c.SocketDir); err != nil {
		return fail(err)
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", c.DataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("throwaway PostgreSQL: initdb: %w: %s", err, strings.TrimSpace(string(out))))
	}
	settings := map[string]string{
		"wal_level":                 "logical",
		"max_replication_slots":     "20",
		"max_wal_senders":           "20",
		"max_connections":           "200",
		"listen_addresses":          "127.0.0.1",
		"unix_socket_directories":   c.SocketDir,
		"fsync":                     "off",
		"synchronous_commit":        "on",
		"full_page_writes":          "off",
		"logical_decoding_work_mem": "64MB",
		"TimeZone":                  "UTC",
	}
	if opts.Durable {
		settings["fsync"] = "on"
		settings["full_page_writes"] = "on"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.settings = append(c.settings, "-c", k+"="+settings[k])
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		c.Port = port
		if lastErr = c.Start(ctx); lastErr == nil {
			return c, nil
		}
	}
	return fail(lastErr)
}

func (c *Cluster) asOwner(mk func(string, os.FileMode) error, dir string) error {
	if err := mk(dir, 0o700); err != nil {
		return fmt.Errorf("throwaway PostgreSQL: mkdir %s: %w", dir, err)
	}
	if c.cred != nil {
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("throwaway PostgreSQL: chown %s: %w", dir, err)
		}
	}
	return nil
}

// Start (re)starts a stopped cluster on its port and waits until it accepts
// connections.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return nil
	}
	args := append([]string{"-D", c.DataDir, "-p", strconv.Itoa(c.Port)}, c.settings...)
	cmd := exec.Command(filepath.Join(c.BinDir, "postgres"), args...)
	logf, err := os.OpenFile(c.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("throwaway PostgreSQL: log file: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: if this process dies without cleanup, the server shuts
	// down immediately instead of lingering.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("throwaway PostgreSQL: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.cmd, c.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			c.cmd = nil
			log, _ := os.ReadFile(c.logFile)
			return fmt.Errorf("throwaway PostgreSQL exited during start-up: %s", tail(string(log), 800))
		case <-ctx.Done():
			c.stopLocked(syscall.SIGQUIT)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stopLocked(syscall.SIGQUIT)
			return fmt.Errorf("throwaway PostgreSQL did not accept connections within 30s: %v", err)
		}
	}
}

// Stop shuts the server down (fast mode: running transactions are rolled
// back) and waits for it; the data directory stays for a later Start.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(syscall.SIGINT)
}

// Kill stops the server as a crash would (immediate shutdown, no checkpoint).
func (c *Cluster) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(syscall.SIGQUIT)
}

func (c *Cluster) stopLocked(sig syscall.Signal) {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
	c.cmd = nil
}

// Close stops the server and removes its directory. It is idempotent.
func (c *Cluster) Close() {
	c.closeMu.Do(func() {
		c.Stop()
		os.RemoveAll(c.root)
	})
}

// URL is a connection URL for database db as superuser postgres over TCP.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Log returns the tail of the server log, for test failure messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.logFile)
	return tail(string(b), 4000)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("throwaway PostgreSQL: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
