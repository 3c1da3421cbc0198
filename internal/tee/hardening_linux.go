//go:build linux

package tee

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Harden applies the process hardening measures and reports what is in
// force. A measure that cannot be applied is logged loudly and reported; the
// caller decides (require_hardening) whether that is fatal.
func Harden(log *slog.Logger) Hardening {
	if log == nil {
		log = slog.Default()
	}
	var h Hardening
	fail := func(measure string, err error) {
		log.Error("hardening measure not applied", "measure", measure, "err", err)
		h.Warnings = append(h.Warnings, fmt.Sprintf("%s: %v", measure, err))
	}

	// Core dumps would write key material to disk: RLIMIT_CORE=0, soft and
	// hard, so that the process cannot raise it again (setrlimit(2)).
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		fail("core_dumps_disabled", fmt.Errorf("setrlimit(RLIMIT_CORE, 0): %w", err))
	} else {
		h.CoreDumpsDisabled = true
	}

	// Not dumpable: no core dump even via a core_pattern pipe, no ptrace
	// attach by same-uid processes, /proc/self/mem and friends owned by root
	// (prctl(2) PR_SET_DUMPABLE).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fail("not_dumpable", fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err))
	} else {
		h.NotDumpable = true
	}

	method, notes, err := lockMemory()
	h.Warnings = append(h.Warnings, notes...)
	if err != nil {
		fail("memory_locked", err)
		h.MemlockMethod = MemlockNone
	} else {
		h.MemoryLocked = true
		h.MemlockMethod = method
		for _, n := range notes {
			log.Warn("hardening note", "measure", "memory_locked", "note", n)
		}
	}
	return h
}

// lockMemory locks all current and future pages so that key material is
// never swapped out (mlockall(2)). MCL_ONFAULT (Linux 4.4+) locks pages as
// they are touched instead of committing the Go runtime's large address
// space reservations up front; without it the call would try to populate
// every mapped page.
func lockMemory() (method string, notes []string, err error) {
	try := func() (string, error) {
		err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
		if errors.Is(err, unix.EINVAL) {
			// Kernel without MCL_ONFAULT.
			notes = append(notes, "MCL_ONFAULT not supported by the kernel; locked without it")
			return MemlockAll, unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE)
		}
		return MemlockAllOnFault, err
	}
	method, err = try()
	if err == nil {
		return method, notes, nil
	}
	if !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.EPERM) {
		return "", notes, fmt.Errorf("mlockall: %w", err)
	}
	// Without CAP_IPC_LOCK the locked total is bounded by RLIMIT_MEMLOCK:
	// raise it to unlimited (needs CAP_SYS_RESOURCE) or at least to the hard
	// limit, then retry.
	first := err
	raised, rerr := raiseMemlockLimit()
	if rerr != nil {
		return "", notes, fmt.Errorf("mlockall: %w (raising RLIMIT_MEMLOCK: %v; grant CAP_IPC_LOCK)", first, rerr)
	}
	notes = append(notes, "RLIMIT_MEMLOCK raised to "+raised)
	method, err = try()
	if err != nil {
		return "", notes, fmt.Errorf("mlockall after raising RLIMIT_MEMLOCK to %s: %w (grant CAP_IPC_LOCK)", raised, err)
	}
	return method, notes, nil
}

func raiseMemlockLimit() (string, error) {
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &cur); err != nil {
		return "", fmt.Errorf("getrlimit: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}); err == nil {
		return "unlimited", nil
	}
	if cur.Cur >= cur.Max {
		return "", fmt.Errorf("soft limit already at hard limit %d bytes", cur.Max)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: cur.Max, Max: cur.Max}); err != nil {
		return "", fmt.Errorf("setrlimit: %w", err)
	}
	if cur.Max == unix.RLIM_INFINITY {
		return "unlimited", nil
	}
	return strconv.FormatUint(cur.Max, 10) + " bytes (hard limit)", nil
}

// Current reports what is really in force, read back from the kernel:
// getrlimit(RLIMIT_CORE), prctl(PR_GET_DUMPABLE) and VmLck/VmSize in
// /proc/self/status.
func Current() Hardening {
	var h Hardening
	var core unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &core); err != nil {
		h.Warnings = append(h.Warnings, "getrlimit(RLIMIT_CORE): "+err.Error())
	} else {
		h.CoreDumpsDisabled = core.Cur == 0 && core.Max == 0
		if core.Cur == 0 && core.Max != 0 {
			h.Warnings = append(h.Warnings, "RLIMIT_CORE soft limit is 0 but the hard limit is not: it can be raised again")
		}
	}
	if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil {
		h.Warnings = append(h.Warnings, "prctl(PR_GET_DUMPABLE): "+err.Error())
	} else {
		h.NotDumpable = d == 0
	}
	h.MemlockMethod = MemlockNone
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		h.Warnings = append(h.Warnings, "reading /proc/self/status: "+err.Error())
		return h
	}
	lck, lerr := statusKB(st, "VmLck")
	size, serr := statusKB(st, "VmSize")
	if lerr != nil || serr != nil {
		h.Warnings = append(h.Warnings, "parsing /proc/self/status: "+errors.Join(lerr, serr).Error())
		return h
	}
	h.MemoryLocked = lck > 0
	switch {
	case lck == 0:
	case lck*10 >= size*9:
		// A few special mappings (vdso, vvar) are never counted as locked.
		h.MemlockMethod = MemlockAllObserved
	default:
		h.MemlockMethod = MemlockPartialObserved
		h.Warnings = append(h.Warnings, fmt.Sprintf("only %d of %d kB of the address space is locked", lck, size))
	}
	return h
}

// statusKB returns the value in kB of a "Key:   123 kB" line of
// /proc/<pid>/status (proc(5)).
func statusKB(status []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	prefix := []byte(key + ":")
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		f := bytes.Fields(line[len(prefix):])
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%s: unexpected format %q", key, line)
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("%s: not found", key)
}
