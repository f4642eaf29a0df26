package wiring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

// ImportEnv is the configuration of `shadowcube import`: the capture
// settings plus the import's own flags.
type ImportEnv struct {
	CaptureEnv
	Format     string `flag:"format" desc:"jsonl or har (default: har for *.har files, jsonl otherwise)"`
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
		res, err := c.Import(ctx, name, f, icfg)
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
