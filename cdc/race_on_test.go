//go:build race

package cdc

// raceEnabled shrinks the largest test sizes under the race detector, which
// slows encoding ~10x; the full sizes run without it (benchmarks, go test).
const raceEnabled = true
