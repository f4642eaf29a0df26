package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
)

// Binary builds cmd/shadowcube once per test process and returns its path,
// for tests that run and kill -9 a real shadowcube process.
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "shadowcube-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "shadowcube")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/shadowcube")
		cmd.Dir = root
		binOut, binErr = cmd.CombinedOutput()
	})
	if binErr != nil {
		tb.Fatalf("testenv: build shadowcube: %v\n%s", binErr, binOut)
	}
	return binPath
}
