// Package process is the plumbing every shadowcube process shares: the
// common configuration read from SHADOWCUBE_* variables, the slog logger, the
// HTTP server for /metrics, /healthz and /readyz, and shutdown on SIGINT or
// SIGTERM with a bounded drain.
package process
