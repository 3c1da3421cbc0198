package entropy

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says whether CSP randomness is augmented with an HSM.
type Mode string

const (
	ModeAugmentation Mode = "augmentation"
	ModeOff          Mode = "off"
)

// Stats is the mixer's state for status endpoints and metrics.
type Stats struct {
	Mode           string `json:"mode"`
	Source         string `json:"source"` // "pkcs11" | "os"
	HSMBytesRead   uint64 `json:"hsm_bytes_read"`
	HealthFailures uint64 `json:"health_failures"`
}

const (
	drawSize = 64 // bytes taken from each source per chunk
	// chunkMax is the most HKDF-SHA512 can expand from one extraction
	// (RFC 5869 §2.3: L <= 255*HashLen).
	chunkMax    = 255 * sha512.Size
	hsmTimeout  = 10 * time.Second
	mixSalt     = "moonvault entropy mixer v1"
	mixInfo     = "moonvault csp"
	sourceHSM   = "pkcs11"
	sourceOS    = "os"
	maxReadSize = 1 << 20
)

// Mixer is the io.Reader every CSP is generated from. With an HSM source it
// mixes each OS draw with an HSM draw that has passed the SP 800-90B
// health tests; without one (OS) it is crypto/rand. Safe for concurrent use.
type Mixer struct {
	hsm func(ctx context.Context, n int) ([]byte, error)
	log *slog.Logger

	mu     sync.Mutex // serialises the HSM stream through the health tests
	health healthTests

	hsmBytes atomic.Uint64
	failures atomic.Uint64
}

// NewMixer returns an augmenting mixer drawing from hsm (e.g.
// (*hsm.Module).GenerateRandom).
func NewMixer(hsm func(ctx context.Context, n int) ([]byte, error), log *slog.Logger) *Mixer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mixer{hsm: hsm, log: log}
}

// OS returns a mixer in mode off: crypto/rand only.
func OS() *Mixer { return &Mixer{log: slog.New(slog.DiscardHandler)} }

// Stats reports the mode and counters.
func (m *Mixer) Stats() Stats {
	st := Stats{Mode: string(ModeOff), Source: sourceOS, HSMBytesRead: m.hsmBytes.Load(), HealthFailures: m.failures.Load()}
	if m.hsm != nil {
		st.Mode, st.Source = string(ModeAugmentation), sourceHSM
	}
	return st
}

// Read fills p completely or not at all: on failure it returns 0 and an
// error wrapping ErrUnavailable, and p is left untouched. A failure does
// not latch: the next Read runs the start-up tests on a fresh draw, so
// generation resumes by itself once the source is healthy again.
func (m *Mixer) Read(p []byte) (int, error) {
	if _, err := m.read(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Draw is what one ReadDraw took from the sources: the facts a key's
// provenance record states about the randomness it was made from.
type Draw struct {
	Mode   string // ModeAugmentation or ModeOff
	Source string // "pkcs11" or "os"
	// HSMBytes is the number of HSM bytes mixed into this output (each
	// passed the SP 800-90B start-up and continuous tests); 0 in mode off.
	HSMBytes uint64
	// Health is "passed" when every HSM byte mixed in passed the health
	// tests (a draw that fails them returns an error instead), or
	// "not_applicable" without an HSM source.
	Health string
	// HealthFailures counts the failed draws since the process started.
	HealthFailures uint64
}

// Health states of a Draw.
const (
	HealthPassed        = "passed"
	HealthNotApplicable = "not_applicable"
)

// ReadDraw fills p like Read and says what it drew.
func (m *Mixer) ReadDraw(p []byte) (Draw, error) {
	n, err := m.read(p)
	if err != nil {
		return Draw{}, err
	}
	st := m.Stats()
	d := Draw{Mode: st.Mode, Source: st.Source, HSMBytes: n, Health: HealthNotApplicable, HealthFailures: st.HealthFailures}
	if m.hsm != nil {
		d.Health = HealthPassed
	}
	return d, nil
}

// read is Read, returning the number of HSM bytes mixed into p.
func (m *Mixer) read(p []byte) (uint64, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxReadSize {
		return 0, fmt.Errorf("%w: read of %d bytes exceeds %d", ErrUnavailable, len(p), maxReadSize)
	}
	out := make([]byte, len(p))
	defer clear(out)
	if m.hsm == nil {
		if _, err := io.ReadFull(rand.Reader, out); err != nil {
			return 0, fmt.Errorf("%w: os: %v", ErrUnavailable, err)
		}
		copy(p, out)
		return 0, nil
	}
	var mixed uint64
	ctx, cancel := context.WithTimeout(context.Background(), hsmTimeout)
	defer cancel()
	var osDraw [drawSize]byte
	defer clear(osDraw[:])
	for off := 0; off < len(out); off += chunkMax {
		end := min(off+chunkMax, len(out))
		hsmDraw, err := m.drawHSM(ctx)
		if err != nil {
			m.failures.Add(1)
			m.log.Warn("entropy source failed; CSP generation refused until it recovers", "source", sourceHSM, "err", err)
			return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if _, err := io.ReadFull(rand.Reader, osDraw[:]); err != nil {
			clear(hsmDraw)
			return 0, fmt.Errorf("%w: os: %v", ErrUnavailable, err)
		}
		mixed += uint64(len(hsmDraw))
		err = mix(out[off:end], osDraw[:], hsmDraw)
		clear(hsmDraw)
		if err != nil {
			return 0, fmt.Errorf("%w: mix: %v", ErrUnavailable, err)
		}
	}
	copy(p, out)
	return mixed, nil
}

// drawHSM returns drawSize HSM bytes that passed the health tests. After
// construction or a failure it first runs the start-up tests (§4.3) on
// startupSize fresh bytes, which are discarded.
func (m *Mixer) drawHSM(ctx context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.health.started {
		b, err := m.pull(ctx, startupSize)
		if err != nil {
			return nil, err
		}
		err = m.health.feed(b)
		clear(b)
		if err != nil {
			m.health.reset()
			return nil, fmt.Errorf("start-up health test: %w", err)
		}
		m.health.started = true
	}
	b, err := m.pull(ctx, drawSize)
	if err != nil {
		m.health.reset()
		return nil, err
	}
	if err := m.health.feed(b); err != nil {
		clear(b)
		m.health.reset()
		return nil, fmt.Errorf("continuous health test: %w", err)
	}
	return b, nil
}

func (m *Mixer) pull(ctx context.Context, n int) ([]byte, error) {
	b, err := m.hsm(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("hsm random: %w", err)
	}
	m.hsmBytes.Add(uint64(len(b)))
	if len(b) != n {
		return nil, fmt.Errorf("hsm random: got %d bytes, want %d", len(b), n)
	}
	return b, nil
}

// mix fills out (at most chunkMax bytes) with
// HKDF-SHA512(salt, IKM = osDraw || hsmDraw, info).
//
// Why this is at least as strong as the stronger input: HKDF-Extract is a
// randomness extractor over its whole IKM (RFC 5869 §3.3; NIST SP 800-56C
// Rev. 2 §5.1), so concatenating an independent input cannot lower the
// min-entropy the output is derived from — this is the "combine with a
// hash-based KDF" construction of NIST SP 800-133 Rev. 2 §6.3 and the
// augmentation of SP 800-90C. The 64-byte OS draw alone has full entropy
// (512 bits, more than any 256-bit CSP needs), so a weak or hostile HSM
// cannot reduce it; a broken OS generator is rescued by the HSM's 64 bytes.
func mix(out, osDraw, hsmDraw []byte) error {
	ikm := make([]byte, 0, len(osDraw)+len(hsmDraw))
	ikm = append(append(ikm, osDraw...), hsmDraw...)
	defer clear(ikm)
	k, err := hkdf.Key(sha512.New, ikm, []byte(mixSalt), mixInfo, len(out))
	if err != nil {
		return err
	}
	copy(out, k)
	clear(k)
	return nil
}
