package testenv

import (
	"slices"
	"syscall"
	"time"
)

// ProcessCPU is the user+system CPU time this process has used: the
// benchmarks report CPU per operation next to rates, the view of a
// comparison that suffers least from other load on a shared machine.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median returns the median of xs (the upper one of an even count); xs is
// not modified.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
