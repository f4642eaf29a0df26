package main

import (
	"context"
	"embed"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
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

//go:embed help/*.txt
var helpFiles embed.FS

// help returns the hand-written part of a command's help text
// (help/<name>.txt); the variables and flags are generated from the config
// structs' tags (wiring.EnvHelp).
func help(name string) string {
	b, err := helpFiles.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic("help text " + name + ": " + err.Error())
	}
	return string(b)
}

// runStage is a one-stage command: the process plumbing of name, then the
// stage build makes, run until a signal.
func runStage(cmd *cobra.Command, name string, build func(ctx context.Context, p *Env, conn *natsx.Conn) (wiring.Stage, error)) error {
	ctx, p, err := setup(cmd, name, true)
	if err != nil {
		return err
	}
	defer p.Close()
	return wiring.RunStage(ctx, p, func(ctx context.Context, conn *natsx.Conn) (wiring.Stage, error) { return build(ctx, p, conn) })
}

// configured builds the command name whose configuration is spec (a
// wiring env struct): its help is help/<name>.txt followed by spec's
// variables and flags (generated from the tags) and extraEnv, and run is
// called once the environment and the flags are read into spec.
func configured(name, use, short string, spec any, extraEnv string, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		Long: help(name) + wiring.EnvHelp("Environment", spec) + extraEnv + commonEnvHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := load(cmd, spec); err != nil {
				return err
			}
			return run(cmd, args)
		},
	}
	wiring.BindFlags(cmd.Flags(), spec)
	return cmd
}

// withNATS runs f in a one-shot command's process plumbing with a NATS
// connection (no ops server).
func withNATS(cmd *cobra.Command, name string, f func(ctx context.Context, p *Env, conn *natsx.Conn) error) error {
	ctx, p, err := setup(cmd, name, false)
	if err != nil {
		return err
	}
	defer p.Close()
	conn, err := p.ConnectNATS(ctx)
	if err != nil {
		return err
	}
	return f(ctx, p, conn)
}

// negNumber finds the "-1" of pflag's "unknown shorthand flag: '1' in -1".
var negNumber = regexp.MustCompile(`^unknown shorthand flag: .* in (-\d+)$`)

// negativeArg is a flag error function for commands taking numbers as
// arguments: the flag parser reads "-1" as shorthand flags; bad(arg) says
// what is wrong with the number instead.
func negativeArg(bad func(arg string) error) func(*cobra.Command, error) error {
	return func(_ *cobra.Command, err error) error {
		if m := negNumber.FindStringSubmatch(err.Error()); m != nil {
			return usageError{bad(m[1])}
		}
		return usageError{err}
	}
}
