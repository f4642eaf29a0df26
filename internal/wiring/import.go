package wiring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/publisher/sniff"
	"github.com/heal7/shadowcube/schemas"
)

// ImportEnv is the configuration of `shadowcube import`: the capture
// settings plus the import's own flags.
type ImportEnv struct {
	CaptureEnv
	Format     string `flag:"format" desc:"jsonl, har, gor or pcap (default from the name: *.har, *.gor, *.pcap/*.pcapng/*.cap, a .gz after it looked through; jsonl otherwise)"`
	Port       int    `flag:"port" min:"0" max:"65535" desc:"pcap: the legacy service's TCP port, for connections whose SYN is not in the file (optional)"`
	OnError    string `flag:"on-error" default:"skip" desc:"skip: list bad lines and go on; fatal: stop at the first (exit status 1)"`
	NoProgress bool   `flag:"no-progress" desc:"no progress line even on a terminal"`
	Keyed      bool   `flag:"keyed-user-keys" desc:"accept records that carry a user_key: they must already be user keys made with this SHADOWCUBE_USER_KEY_SECRET (hmac-sha256:<64 hex>); without it such records are bad: put raw user ids in the user header instead"`
}

// ImportReport is what an import did.
type ImportReport struct {
	Events, Bad int
	Stats       publisher.Stats
}

// Import publishes files to LEGACY_REQUESTS through a capturer with the
// tap's privacy rules, and waits until JetStream acknowledged every event.
// Bad records are listed on p.Stderr (and skipped or fatal by OnError); with
// progress, a progress line per file is drawn there too.
func Import(ctx context.Context, p *Process, e *ImportEnv, files []string, progress bool) (*ImportReport, error) {
	cfg, _, err := e.CapturerConfig()
	settings, serr := e.StreamSettings()
	if err = errors.Join(err, serr); err != nil {
		return nil, err
	}
	conn, err := p.ConnectNATS(ctx)
	if err != nil {
		return nil, err
	}
	// the tap owns LEGACY_REQUESTS' limits: import sets them only when told to
	if settings == (publisher.StreamSettings{}) {
		_, err = natsx.StreamForReader(ctx, conn.JS, schemas.StreamLegacyRequests)
	} else {
		err = publisher.EnsureStream(ctx, conn.JS, settings)
	}
	if err != nil {
		return nil, err
	}
	c, err := publisher.New(cfg, publisher.Deps{Conn: conn.NC, Logger: p.Log})
	if err != nil {
		return nil, err
	}
	capErr := make(chan error, 1)
	go func() { capErr <- c.Run(context.WithoutCancel(ctx)) }()
	defer func() { c.Close(); <-capErr }()
	rep := &ImportReport{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		icfg := publisher.ImportConfig{Format: e.Format, OnError: e.OnError, KeyedUserKeys: e.Keyed}
		if progress {
			icfg.Progress = func(read, events int64) {
				fmt.Fprintf(p.Stderr, "\r%s: %d events, %.1f MiB read, %.0f events/s   ", name, events, float64(read)/(1<<20), float64(events)/time.Since(start).Seconds())
			}
		}
		var res publisher.ImportResult
		if e.Format == publisher.FormatPcap || (e.Format == "" && publisher.GuessFormat(name) == publisher.FormatPcap) {
			res, err = importPcap(ctx, c, name, f, e.Port, p)
		} else {
			res, err = c.Import(ctx, name, f, icfg)
		}
		f.Close()
		if progress {
			fmt.Fprintln(p.Stderr)
		}
		for _, le := range res.Bad {
			if e.OnError != publisher.OnErrorFatal {
				fmt.Fprintf(p.Stderr, "%s (skipped)\n", le)
			}
		}
		rep.Events += res.Events
		rep.Bad += len(res.Bad)
		if err != nil {
			return rep, err
		}
	}
	if err := c.Flush(ctx); err != nil {
		return rep, err
	}
	rep.Stats = c.Stats()
	return rep, nil
}

// importPcap publishes the exchanges of a pcap file through the sniff
// reassembly; those it cannot follow are reported as skipped records.
func importPcap(ctx context.Context, c *publisher.Capturer, name string, f *os.File, port int, p *Process) (publisher.ImportResult, error) {
	sn, err := sniff.New(sniff.Config{Port: port, Source: schemas.SourceImport, Wait: true}, sniff.Deps{Capturer: c, Logger: p.Log})
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
