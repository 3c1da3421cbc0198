//go:build unix

package chain_test

import (
	"syscall"
	"time"
)

// cpuTime is the process's user and system CPU time. Under a shared,
// loaded machine wall time per op swings with the load; CPU time per op
// does not, so the benchmarks report both.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
