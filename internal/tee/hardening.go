package tee

// Hardening reports which process hardening measures are in force.
type Hardening struct {
	CoreDumpsDisabled bool     `json:"core_dumps_disabled"`
	NotDumpable       bool     `json:"not_dumpable"`
	MemoryLocked      bool     `json:"memory_locked"`
	MemlockMethod     string   `json:"memlock_method"`
	Warnings          []string `json:"warnings,omitempty"`
}

// Complete reports whether every measure is in force; require_hardening
// refuses to start the server when it is false.
func (h Hardening) Complete() bool {
	return h.CoreDumpsDisabled && h.NotDumpable && h.MemoryLocked
}

// Memlock methods reported in Hardening.MemlockMethod.
const (
	MemlockNone            = "none"
	MemlockAll             = "mlockall(MCL_CURRENT|MCL_FUTURE)"
	MemlockAllOnFault      = "mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT)"
	MemlockAllObserved     = "mlockall"    // Current: nearly all mappings are locked
	MemlockPartialObserved = "partial"     // Current: some memory is locked, not all
	memlockUnsupported     = "unsupported" // non-Linux
)
