package entropy_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
)

type fault int32

const (
	healthy fault = iota
	stuck         // the HSM returns all zeros
	failing       // the HSM returns an error
)

var errInjected = errors.New("injected HSM failure")

// faulty wraps a real SoftHSM2 GenerateRandom with switchable faults.
func faulty(t testing.TB) (func(context.Context, int) ([]byte, error), *atomic.Int32) {
	t.Helper()
	m, err := hsm.Open(hsmtest.NewToken(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var mode atomic.Int32
	return func(ctx context.Context, n int) ([]byte, error) {
		b, err := m.GenerateRandom(ctx, n)
		switch fault(mode.Load()) {
		case stuck:
			clear(b)
		case failing:
			return nil, errInjected
		}
		return b, err
	}, &mode
}

func TestMixerFaultInjection(t *testing.T) {
	src, mode := faulty(t)
	m := entropy.NewMixer(src, nil)
	if st := m.Stats(); st.Mode != "augmentation" || st.Source != "pkcs11" {
		t.Fatalf("stats = %+v", st)
	}
	read := func() (int, []byte, error) {
		p := bytes.Repeat([]byte{0xAA}, 32)
		n, err := m.Read(p)
		return n, p, err
	}
	if n, _, err := read(); err != nil || n != 32 {
		t.Fatalf("healthy read = %d, %v", n, err)
	}
	before := m.Stats().HSMBytesRead
	if before < 1024+64 {
		t.Fatalf("hsm bytes read %d; start-up test not run", before)
	}
	for _, tc := range []struct {
		name  string
		fault fault
	}{{"stuck bytes", stuck}, {"hsm error", failing}} {
		t.Run(tc.name, func(t *testing.T) {
			failures := m.Stats().HealthFailures
			mode.Store(int32(tc.fault))
			n, p, err := read()
			if n != 0 || !errors.Is(err, entropy.ErrUnavailable) {
				t.Fatalf("faulty read = %d, %v; want 0, ErrUnavailable", n, err)
			}
			if tc.fault == failing && !errors.Is(err, errInjected) {
				t.Fatalf("cause lost: %v", err)
			}
			if !bytes.Equal(p, bytes.Repeat([]byte{0xAA}, 32)) {
				t.Fatal("p was written on failure")
			}
			if got := m.Stats().HealthFailures; got != failures+1 {
				t.Fatalf("health_failures = %d, want %d", got, failures+1)
			}
			// Still broken: still refused.
			if _, _, err := read(); !errors.Is(err, entropy.ErrUnavailable) {
				t.Fatalf("second faulty read: %v", err)
			}
			mode.Store(int32(healthy))
			n, p, err = read()
			if err != nil || n != 32 || bytes.Equal(p, bytes.Repeat([]byte{0xAA}, 32)) {
				t.Fatalf("healed read = %d, %v", n, err)
			}
		})
	}
	if after := m.Stats().HSMBytesRead; after <= before {
		t.Fatalf("hsm bytes read did not grow: %d -> %d", before, after)
	}
}

func TestMixerLargeRead(t *testing.T) {
	src, _ := faulty(t)
	m := entropy.NewMixer(src, nil)
	p := make([]byte, 40000) // spans several HKDF chunks
	if n, err := m.Read(p); err != nil || n != len(p) {
		t.Fatalf("Read = %d, %v", n, err)
	}
	// Chunks must differ (fresh draws per chunk).
	if bytes.Equal(p[:64], p[16320:16320+64]) {
		t.Fatal("chunks repeat")
	}
	if n, err := m.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read = %d, %v", n, err)
	}
}

func TestOS(t *testing.T) {
	m := entropy.OS()
	a, b := make([]byte, 32), make([]byte, 32)
	if _, err := m.Read(a); err != nil {
		t.Fatal(err)
	}
	m.Read(b)
	if bytes.Equal(a, b) {
		t.Fatal("equal draws")
	}
	if st := m.Stats(); st.Mode != "off" || st.Source != "os" || st.HSMBytesRead != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func BenchmarkCSP32Augmented(b *testing.B) {
	src, _ := faulty(b)
	m := entropy.NewMixer(src, nil)
	p := make([]byte, 32)
	for b.Loop() {
		if _, err := m.Read(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCSP32OS(b *testing.B) {
	m := entropy.OS()
	p := make([]byte, 32)
	for b.Loop() {
		if _, err := m.Read(p); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMixerConcurrent(t *testing.T) {
	src, _ := faulty(t)
	m := entropy.NewMixer(src, nil)
	done := make(chan error, 8)
	for range 8 {
		go func() {
			p := make([]byte, 32)
			for range 50 {
				if _, err := m.Read(p); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Stats().HSMBytesRead; got != 1024+8*50*64 {
		t.Fatalf("hsm bytes read = %d", got)
	}
}

// ReadDraw reports what a read drew: the HSM bytes mixed into it (one
// 64-byte draw per HKDF chunk), not the start-up test's discarded bytes.
func TestReadDraw(t *testing.T) {
	src, mode := faulty(t)
	m := entropy.NewMixer(src, nil)
	for _, tc := range []struct {
		size int
		want uint64
	}{{32, 64}, {40000, 3 * 64}} {
		d, err := m.ReadDraw(make([]byte, tc.size))
		if err != nil {
			t.Fatal(err)
		}
		if d.Mode != "augmentation" || d.Source != "pkcs11" || d.HSMBytes != tc.want || d.Health != entropy.HealthPassed {
			t.Fatalf("%d bytes: draw = %+v, want %d HSM bytes", tc.size, d, tc.want)
		}
	}
	mode.Store(int32(stuck))
	if _, err := m.ReadDraw(make([]byte, 32)); !errors.Is(err, entropy.ErrUnavailable) {
		t.Fatalf("stuck source: %v", err)
	}
	mode.Store(int32(healthy))
	d, err := m.ReadDraw(make([]byte, 32))
	if err != nil || d.HealthFailures != 1 {
		t.Fatalf("after a failure: %+v %v", d, err)
	}
	d, err = entropy.OS().ReadDraw(make([]byte, 32))
	if err != nil || d.Mode != "off" || d.HSMBytes != 0 || d.Health != entropy.HealthNotApplicable {
		t.Fatalf("os draw = %+v %v", d, err)
	}
}
