package main

import (
	"context"
	"testing"
)

// runInBackground runs a stage's Run(ctx) until the test ends; then Close stops it
// and Run must have returned nil.
func runInBackground(t testing.TB, ctx context.Context, run func(context.Context) error, closeFn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		closeFn()
		if err := <-done; err != nil {
			t.Errorf("stage run: %v", err)
		}
	})
}
