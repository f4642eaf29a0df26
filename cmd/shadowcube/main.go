// Command shadowcube is the one binary of the shadowcube pipeline: it wires
// the stages (tap, cdc, sync, shadow, compare, ...) from environment
// configuration and flags. Run `shadowcube --help` for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/wiring"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status: 0 success,
// 1 failure, 2 bad usage. Errors are printed as one line, never a stack trace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "shadowcube: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		if isUsageError(err) {
			fmt.Fprintln(stderr, "Run 'shadowcube --help' for usage.")
			return 2
		}
		return 1
	}
	return 0
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "shadowcube",
		Short:         "Zero-risk migration of a live legacy service onto new services (cubes)",
		Long:          help("shadowcube") + commonEnvHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(commands()...)
	return root
}

// commands lists the subcommands; each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(),
		newDemoCmd(),
		newTapCmd(),
		newImportCmd(),
		newSniffCmd(),
		newFlagsCmd(),
		newRolloutCmd(),
		newCDCCmd(),
		newSyncCmd(),
		newReconcileCmd(),
		newDLQCmd(),
		newShadowCmd(),
		newCompareCmd(),
		newDemoServiceCmd(),
		newLoadgenCmd(),
	}
}

// usageError marks errors in the command line itself (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func isUsageError(err error) bool {
	var u usageError
	if errors.As(err, &u) {
		return true
	}
	// A bad SHADOWCUBE_* value is a usage error too: the command cannot run as asked.
	var ee *process.EnvError
	var fe *wiring.FlagError
	if errors.As(err, &ee) || errors.As(err, &fe) {
		return true
	}
	// cobra reports unknown commands and bad arg counts as plain errors.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if len(msg) >= len(p) && containsFold(msg, p) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// exitError carries a specific exit status (e.g. gate no-go, reconcile diff).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
