package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newReportCmd() *cobra.Command {
	var e wiring.ReportEnv
	return configured("report", "report", "Write the mismatch report (self-contained HTML, or CSV/JSON) from the mismatch store", &e, "",
		func(cmd *cobra.Command, _ []string) error {
			q, opts, err := e.Check(time.Now())
			if err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "report", false)
			if err != nil {
				return err
			}
			defer p.Close()
			path, err := wiring.Report(ctx, p, &e, q, opts)
			if err == nil && path != "" {
				fmt.Fprintf(p.Stderr, "report: wrote %s\n", path)
			}
			return err
		})
}
