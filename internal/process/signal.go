package process

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// SignalContext returns a context cancelled on the first SIGINT or SIGTERM.
// A second signal, or the drain taking longer than drain, exits the process
// with status 1 so a stuck shutdown never hangs a deploy.
func SignalContext(parent context.Context, drain time.Duration, onForce func(string)) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	stop := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-stop:
			return
		}
		select {
		case s := <-sigs:
			onForce("second signal " + s.String())
		case <-time.After(drain):
			onForce("graceful stop took longer than " + drain.String())
		case <-stop:
			return
		}
		os.Exit(1)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(stop)
		cancel()
	}
}

// ShutdownTimeout parses SHADOWCUBE_SHUTDOWN_TIMEOUT.
func (c *Common) ShutdownTimeout() (time.Duration, error) {
	d, err := time.ParseDuration(c.ShutdownWait)
	if err != nil || d <= 0 {
		return 0, &EnvError{Var: "SHADOWCUBE_SHUTDOWN_TIMEOUT", Value: c.ShutdownWait, Msg: "want a positive duration like 20s"}
	}
	return d, nil
}
