package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

// commonEnvHelp is appended to help texts: the variables every command
// reads, generated from their desc tags.
var commonEnvHelp = wiring.CommonHelp()

// Env is what a long-running subcommand gets (wiring.Process).
type Env = wiring.Process

// setup starts the process plumbing for a component ("cdc", "sync", ...).
// The returned context ends on a signal.
func setup(cmd *cobra.Command, component string, serveOps bool) (context.Context, *Env, error) {
	return wiring.Start(cmd.Context(), component, cmd.OutOrStdout(), cmd.ErrOrStderr(), serveOps)
}

// load reads spec's variables and applies the command's flags over them.
func load(cmd *cobra.Command, spec any) error { return wiring.Load(spec, cmd.Flags()) }
