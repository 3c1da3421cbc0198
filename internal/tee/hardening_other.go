//go:build !linux

package tee

import (
	"errors"
	"log/slog"
)

var errHardeningUnsupported = errors.New("not supported on this operating system")

// Harden applies no measure outside Linux; it logs and reports that.
func Harden(log *slog.Logger) Hardening {
	if log == nil {
		log = slog.Default()
	}
	for _, m := range []string{"core_dumps_disabled", "not_dumpable", "memory_locked"} {
		log.Error("hardening measure not applied", "measure", m, "err", errHardeningUnsupported)
	}
	return Current()
}

// Current reports that nothing is in force outside Linux.
func Current() Hardening {
	return Hardening{MemlockMethod: memlockUnsupported, Warnings: []string{"process hardening: " + errHardeningUnsupported.Error()}}
}
