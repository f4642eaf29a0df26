package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newImportCmd() *cobra.Command {
	var ce wiring.ImportEnv
	cmd := configured("import", "import [flags] FILE...", "Publish recorded traffic (JSONL request events or HAR) to the LEGACY_REQUESTS stream", &ce, "",
		func(cmd *cobra.Command, files []string) error {
			if _, _, err := ce.CapturerConfig(); err != nil {
				return usageError{err}
			}
			if _, err := ce.StreamSettings(); err != nil {
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
			rep, err := wiring.Import(ctx, e, &ce, files, !ce.NoProgress && isTerminal(os.Stderr))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "imported %d events from %d file(s); %d bad records skipped; %d acknowledged by JetStream\n", rep.Events, len(files), rep.Bad, rep.Stats.Published)
			if rep.Events == 0 {
				if rep.Bad == 0 {
					return errors.New("no event imported: the file(s) hold no records")
				}
				return fmt.Errorf("no event imported: all %d records were bad (listed above)", rep.Bad)
			}
			if rep.Stats.Dropped > 0 {
				return fmt.Errorf("%d events were not acknowledged by JetStream; run the import again (it is idempotent)", rep.Stats.Dropped)
			}
			return nil
		})
	cmd.Args = cobra.MinimumNArgs(1)
	return cmd
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
