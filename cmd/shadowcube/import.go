package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/publisher/sniff"
	"github.com/heal7/shadowcube/schemas"
)

func newImportCmd() *cobra.Command {
	var service, routesFile, maxBody, format, onError string
	var noProgress, keyed bool
	var pcapPort int
	cmd := &cobra.Command{
		Use:   "import [flags] FILE...",
		Short: "Publish recorded traffic (JSONL request events or HAR) to the LEGACY_REQUESTS stream",
		Long: `import publishes recorded legacy traffic to the LEGACY_REQUESTS stream, as if the
tap had captured it.

Formats (any of them gzipped too):
  jsonl  one schemas.RequestEvent per line with its legacy response (see
         schemas/request_event.schema.json); "v", "id", "service", "route" and
         "source" may be left out: v = 1.0, id = hash of the line, service from
         --service, route from the routes file (else /_other), source = import.
         Blank lines and lines starting with # are ignored.
  har    a HAR 1.2 file (browser or proxy export); each entry becomes one event.
  gor    a GoReplay recording (gor --input-raw :PORT --input-raw-track-response
         --output-file F.gor): each request paired with its response by id; a
         response without its request (gor misses pipelined requests) or a request
         without its response is a bad record. Replayed responses (type 3) are skipped.
  pcap   a pcap or pcapng file (tcpdump -w F.pcap 'tcp port PORT'), read through
         the same reassembly as 'shadowcube sniff' (routes and sampling apply as
         there); exchanges it cannot follow are counted as skipped. --port says
         which side is the server for connections whose SYN is not in the file.

The same privacy rules as the tap apply (user id → user key, credentials and
configured headers dropped, JSON redaction). Bad lines are reported as
FILE:LINE: reason (FILE:OFFSET, a byte offset, for gor and pcap) and skipped (--on-error skip) or stop the import
(--on-error fatal, exit status 1). Re-importing a file publishes nothing new:
each event's Nats-Msg-Id is its id (the content hash when the record has none),
de-duplicated by JetStream within the stream's duplicate window (2 minutes by
default; SHADOWCUBE_LEGACY_REQUESTS_DUPLICATES widens it). A progress line is shown on a terminal.

Flags:
  --format jsonl|har|gor|pcap  default from the name: *.har, *.gor, *.pcap/*.pcapng/*.cap
                       (a .gz after it is looked through), jsonl otherwise
  --port N             pcap: the legacy service's TCP port (optional)
  --on-error skip|fatal  default skip
  --no-progress        no progress line even on a terminal
  --keyed-user-keys    accept records that carry a user_key: they must already be user keys made
                       with this SHADOWCUBE_USER_KEY_SECRET (hmac-sha256:<64 hex>). Without it
                       such records are bad: put raw user ids in the user header instead.
  --service NAME       (SHADOWCUBE_TAP_SERVICE)   --routes FILE (SHADOWCUBE_ROUTES_FILE)   --max-body SIZE (SHADOWCUBE_TAP_MAX_BODY)

Exit status: 0 done (skipped lines are listed), 1 a fatal bad line, no event
imported at all, or events JetStream did not acknowledge, 2 bad usage or
configuration.

Environment:` + captureEnvHelp + commonEnvHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			var ce CaptureEnv
			if err := process.Load(&ce); err != nil {
				return err
			}
			ce.override(service, routesFile, maxBody)
			cfg, _, err := ce.capturerConfig()
			settings, serr := ce.streamSettings()
			if err = errors.Join(err, serr); err != nil {
				return usageError{err}
			}
			for _, f := range files {
				if _, err := os.Stat(f); err != nil {
					return usageError{err}
				}
			}
			ctx, e, err := setup(cmd, "import", false)
			if err != nil {
				return err
			}
			defer e.Close()
			conn, err := e.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			// the tap owns LEGACY_REQUESTS' limits: import sets them only when told to
			if settings == (natsx.StreamSettings{}) {
				_, err = natsx.StreamForReader(ctx, conn.JS, schemas.StreamLegacyRequests)
			} else {
				err = publisher.EnsureStream(ctx, conn.JS, settings)
			}
			if err != nil {
				return err
			}
			c, err := publisher.New(cfg, publisher.Deps{Conn: conn.NC, Logger: e.Log})
			if err != nil {
				return err
			}
			defer c.Close()
			capErr := make(chan error, 1)
			go func() { capErr <- c.Run(context.WithoutCancel(ctx)) }()
			defer func() { c.Close(); <-capErr }()
			tty := !noProgress && isTerminal(os.Stderr)
			total, bad := 0, 0
			for _, name := range files {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				start := time.Now()
				icfg := publisher.ImportConfig{Format: format, OnError: onError, KeyedUserKeys: keyed}
				if tty {
					icfg.Progress = func(read, events int64) {
						fmt.Fprintf(e.Stderr, "\r%s: %d events, %.1f MiB read, %.0f events/s   ", name, events, float64(read)/(1<<20), float64(events)/time.Since(start).Seconds())
					}
				}
				var res publisher.ImportResult
				if format == publisher.FormatPcap || (format == "" && publisher.GuessFormat(name) == publisher.FormatPcap) {
					res, err = importPcap(ctx, c, name, f, pcapPort, e)
				} else {
					res, err = c.Import(ctx, name, f, icfg)
				}
				f.Close()
				if tty {
					fmt.Fprintln(e.Stderr)
				}
				for _, le := range res.Bad {
					if onError != publisher.OnErrorFatal {
						fmt.Fprintf(e.Stderr, "%s (skipped)\n", le)
					}
				}
				total += res.Events
				bad += len(res.Bad)
				if err != nil {
					return err
				}
			}
			if err := c.Flush(ctx); err != nil {
				return err
			}
			st := c.Stats()
			fmt.Fprintf(e.Stdout, "imported %d events from %d file(s); %d bad records skipped; %d acknowledged by JetStream\n", total, len(files), bad, st.Published)
			if total == 0 {
				if bad == 0 {
					return errors.New("no event imported: the file(s) hold no records")
				}
				return fmt.Errorf("no event imported: all %d records were bad (listed above)", bad)
			}
			if st.Dropped > 0 {
				return fmt.Errorf("%d events were not acknowledged by JetStream; run the import again (it is idempotent)", st.Dropped)
			}
			return nil
		},
	}
	bindCaptureFlags(cmd, &service, &routesFile, &maxBody)
	cmd.Flags().StringVar(&format, "format", "", "jsonl, har, gor or pcap (default from the file name)")
	cmd.Flags().IntVar(&pcapPort, "port", 0, "pcap: the legacy service's TCP port")
	cmd.Flags().StringVar(&onError, "on-error", publisher.OnErrorSkip, "skip or fatal")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "no progress line on a terminal")
	cmd.Flags().BoolVar(&keyed, "keyed-user-keys", false, "accept records carrying user_key (must be hmac-sha256:<64 hex> made with this secret)")
	return cmd
}

// importPcap publishes the exchanges of a pcap file through the sniff
// reassembly; those it cannot follow are reported as skipped records.
func importPcap(ctx context.Context, c *publisher.Capturer, name string, f *os.File, port int, e *Env) (publisher.ImportResult, error) {
	sn, err := sniff.New(sniff.Config{Port: port, Source: schemas.SourceImport, Wait: true}, sniff.Deps{Capturer: c, Logger: e.Log})
	if err != nil {
		return publisher.ImportResult{}, err
	}
	err = sn.ReadFile(ctx, name, f)
	st := sn.Stats()
	res := publisher.ImportResult{Events: int(st.Published)}
	if st.Dropped > 0 {
		res.Bad = append(res.Bad, &publisher.LineError{File: name, Offset: -1, Msg: fmt.Sprintf("%d exchanges could not be followed (lost segments, connections begun before the recording, TLS, not HTTP/1.x)", st.Dropped)})
	}
	return res, err
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
