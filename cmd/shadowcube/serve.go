package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/webui"
)

// serveEnv is the configuration of `shadowcube serve`; flags override it.
type serveEnv struct {
	Addr        string        `envconfig:"SERVE_ADDR" default:"127.0.0.1:8088" desc:"listen address of the web UI (loopback only by default; :8088 for every interface)"`
	Token       webui.Token   `envconfig:"UI_TOKEN" desc:"token that allows accepting and un-accepting signatures (bearer header or login form); empty: read-only UI. A secret: never logged"`
	AcceptedOut string        `envconfig:"SERVE_ACCEPTED_OUT" desc:"accepted-signatures YAML file rewritten atomically after every change (the file compare --accepted reads)"`
	Refresh     time.Duration `envconfig:"SERVE_REFRESH" default:"30s" min:"0s" max:"24h" desc:"how often pages reload themselves (0 turns auto-refresh off; refresh= in the URL overrides)"`
	TLSCert     string        `envconfig:"SERVE_TLS_CERT" desc:"certificate file: serve HTTPS (with SHADOWCUBE_SERVE_TLS_KEY)"`
	TLSKey      string        `envconfig:"SERVE_TLS_KEY" desc:"private key file of SHADOWCUBE_SERVE_TLS_CERT"`
	Accepted    string        `envconfig:"COMPARE_ACCEPTED_FILE" desc:"accepted-signatures file compare reads: its route + cause rules count as accepted, its signatures are imported once"`
	StoreURL    string        `envconfig:"STORE_DATABASE_URL" desc:"PostgreSQL of the mismatch store"`
	Schema      string        `envconfig:"COMPARE_SCHEMA" default:"shadowcube_compare" desc:"schema of the mismatch store"`
}

const serveHelp = `serve is the report as a live web UI, read from the mismatch store: services,
then a service's routes, then a route's differing field paths and signatures,
then a signature's example pairs as a side-by-side JSON diff with the
differing paths highlighted. Filters (time window, service, route, cause,
signature, verdict) live in the URL query, so a view is shared as a link:
  http://127.0.0.1:8088/route?service=saju&route=/api/saju/chart&since=24h&verdict=open
since and until take a time (2026-11-30, 2026-11-30T10:00:00Z) or a duration
back from now (24h, 7d). Pages reload themselves (refresh=SECONDS in the URL,
0 stops it; a page holds still while you type in it).

Accepting a signature as expected (who and why) and un-accepting it needs
SHADOWCUBE_UI_TOKEN: log in with it on /login (an HttpOnly, SameSite=Strict
session cookie, Secure over TLS; forms carry a per-session CSRF token and
cross-origin POSTs are refused), or send it as a bearer header:
  curl -H "Authorization: Bearer $SHADOWCUBE_UI_TOKEN" --data-urlencode signature=... \
       --data-urlencode who=alice --data-urlencode reason="..." http://127.0.0.1:8088/accept
(/unaccept takes the same fields; --data-urlencode keeps a "+" in a signature)
Without a token the UI is read-only: no buttons, and POSTs answer 403.
Every change is written to the store's audit table (shown on /audit) and,
with --accepted-out FILE, FILE is rewritten atomically in the format
'shadowcube compare --accepted FILE' reads: the accepted signatures (with a
comment saying who and when) plus the route + cause entries FILE already
held. /accepted.yaml serves the same list. compare reads the file at start:
restart it to apply a change to new pairs.

/healthz answers ok. On SIGINT/SIGTERM, requests in flight finish within
SHADOWCUBE_SHUTDOWN_TIMEOUT.

Each service's gate verdict is shown as in the report (--criteria FILE, the
built-in criteria by default); its sync-lag and DLQ criteria read NATS when
SHADOWCUBE_NATS_URL is set (serve never starts an embedded server).

Flags (each overrides its environment variable):
  --addr ADDR            SHADOWCUBE_SERVE_ADDR         listen address (127.0.0.1:8088)
  --accepted-out FILE    SHADOWCUBE_SERVE_ACCEPTED_OUT accepted-signatures YAML export (none)
  --accepted FILE        SHADOWCUBE_COMPARE_ACCEPTED_FILE the file compare reads: its route +
                         cause rules count as accepted (and stay in the export); its
                         signatures the store has never seen are imported at start
                         (default: --accepted-out when that file exists)
  --criteria FILE        gate criteria (default built in)
  --refresh D            SHADOWCUBE_SERVE_REFRESH      auto-refresh period, 0 = off (30s)

Environment only:
  SHADOWCUBE_UI_TOKEN              token for changes; empty = read-only (a secret: never logged)
  SHADOWCUBE_SERVE_TLS_CERT, SHADOWCUBE_SERVE_TLS_KEY  serve HTTPS
  SHADOWCUBE_STORE_DATABASE_URL    PostgreSQL of the mismatch store (required)
  SHADOWCUBE_COMPARE_SCHEMA        schema of the store (shadowcube_compare)`

func newServeCmd() *cobra.Command {
	var (
		addr, acceptedOut, accepted, criteria string
		refresh                               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the report as a live web UI; accept signatures with SHADOWCUBE_UI_TOKEN",
		Long:  serveHelp + commonEnvHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var env serveEnv
			if err := process.Load(&env); err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("addr") {
				env.Addr = addr
			}
			if f.Changed("accepted-out") {
				env.AcceptedOut = acceptedOut
			}
			if f.Changed("accepted") {
				env.Accepted = accepted
			}
			if f.Changed("refresh") {
				if refresh < 0 || refresh > 24*time.Hour {
					return usageError{fmt.Errorf("serve: --refresh %v: want 0 (off) to 24h", refresh)}
				}
				env.Refresh = refresh
			}
			if env.Addr == "" {
				return usageError{fmt.Errorf("serve: empty listen address: pass --addr or set SHADOWCUBE_SERVE_ADDR")}
			}
			if env.StoreURL == "" {
				return usageError{fmt.Errorf("serve: SHADOWCUBE_STORE_DATABASE_URL is not set: the mismatch store's PostgreSQL URL")}
			}
			if (env.TLSCert == "") != (env.TLSKey == "") {
				return usageError{fmt.Errorf("serve: set both SHADOWCUBE_SERVE_TLS_CERT and SHADOWCUBE_SERVE_TLS_KEY, or neither")}
			}
			crit, err := loadCriteriaFlag(criteria)
			if err != nil {
				return err
			}
			ctx, e, err := setup(cmd, "serve", true)
			if err != nil {
				return err
			}
			defer e.Close()
			drain, err := e.Common.ShutdownTimeout()
			if err != nil {
				return err
			}
			store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: env.StoreURL, Schema: env.Schema})
			if err != nil {
				return err
			}
			e.OnClose(func() { store.Close() })
			var deps = webui.Deps{Store: store, Log: e.Log}
			if e.Common.NATSURL != "" {
				// Only an existing NATS: the gate reads its sync watermarks and DLQs.
				conn, err := e.ConnectNATS(ctx)
				if err != nil {
					return err
				}
				deps.JS = conn.JS
			}
			r := env.Refresh
			if r == 0 {
				r = -1 // off
			}
			srv, err := webui.Start(ctx, webui.Config{Addr: env.Addr, Token: env.Token, AcceptedIn: env.Accepted, AcceptedOut: env.AcceptedOut,
				Refresh: r, Criteria: crit, TLSCert: env.TLSCert, TLSKey: env.TLSKey}, deps)
			if err != nil {
				return err
			}
			scheme := "http"
			if env.TLSCert != "" {
				scheme = "https"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving the report on %s://%s/\n", scheme, srv.Addr())
			select {
			case <-ctx.Done():
			case <-srv.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			if err := srv.Close(sctx); err != nil {
				return fmt.Errorf("serve: stop: %w", err)
			}
			e.Log.Info("web UI stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8088", "listen address (SHADOWCUBE_SERVE_ADDR)")
	f.StringVar(&acceptedOut, "accepted-out", "", "accepted-signatures YAML file rewritten after every change (SHADOWCUBE_SERVE_ACCEPTED_OUT)")
	f.StringVar(&accepted, "accepted", "", "accepted-signatures file compare reads (SHADOWCUBE_COMPARE_ACCEPTED_FILE)")
	f.StringVar(&criteria, "criteria", "", "gate criteria YAML (see 'shadowcube gate --help'; default built in)")
	f.DurationVar(&refresh, "refresh", 30*time.Second, "auto-refresh period of the pages, 0 = off (SHADOWCUBE_SERVE_REFRESH)")
	return cmd
}
