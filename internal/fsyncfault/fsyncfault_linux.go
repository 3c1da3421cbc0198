//go:build linux && (amd64 || arm64)

package fsyncfault

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncCalls are the system calls that make written data durable (fsync(2),
// fdatasync(2), sync_file_range(2), syncfs(2), sync(2)); msync(2) too, for
// stores that write through a shared mapping.
var syncCalls = [...]uint32{unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_SYNC_FILE_RANGE, unix.SYS_SYNCFS, unix.SYS_SYNC, unix.SYS_MSYNC}

// Install makes every later sync call of the process (all its threads)
// fail with EIO. It needs no privilege: the seccomp filter is installed
// with no_new_privs set (seccomp(2)).
func Install() error {
	// no_new_privs is per thread and must be set on the thread that calls
	// seccomp; TSYNC then applies the filter (and no_new_privs) to all.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("fsyncfault: no_new_privs: %w", err)
	}
	const n = uint8(len(syncCalls))
	const progLen = uint16(4 + len(syncCalls) + 2)
	prog := []unix.SockFilter{
		// A filter for another architecture's calls would match wrong numbers.
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: auditArch},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
	}
	for i, nr := range syncCalls {
		// On a match jump to the EIO return, past the remaining checks and the allow.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: n - uint8(i), Jf: 0, K: nr})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EIO)},
	)
	if len(prog) != int(progLen) {
		return fmt.Errorf("fsyncfault: filter of %d instructions, want %d", len(prog), progLen)
	}
	fprog := unix.SockFprog{Len: progLen, Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))) // #nosec G103 -- seccomp(2) takes a pointer to the program
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("fsyncfault: seccomp: %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("fsyncfault: seccomp: thread %d could not take the filter", r)
	}
	return nil
}
