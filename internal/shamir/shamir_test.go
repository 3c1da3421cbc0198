package shamir

import (
	"bytes"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"testing"

	"github.com/moonvault/moonvault/internal/vectors"
)

// seededRand returns a reproducible CSPRNG (ChaCha8) seeded from crypto/rand
// and logs the seed so a failure can be replayed.
func seededRand(t *testing.T) (*mrand.ChaCha8, *mrand.Rand) {
	t.Helper()
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed: %x", seed)
		}
	})
	choices := seed
	choices[31] ^= 1 // an independent stream for the test's own choices
	return mrand.NewChaCha8(seed), mrand.New(mrand.NewChaCha8(choices))
}

type vectorFile struct {
	Vectors []struct {
		Name         string   `json:"name"`
		Secret       string   `json:"secret"`
		Parts        int      `json:"parts"`
		Threshold    int      `json:"threshold"`
		Xs           string   `json:"xs"`
		Coefficients []string `json:"coefficients"`
		Shares       []string `json:"shares"`
	} `json:"vectors"`
}

// subsets calls fn with every k-element subset of 0..n-1.
func subsets(n, k int, fn func([]int)) {
	idx := make([]int, k)
	var rec func(start, depth int)
	rec = func(start, depth int) {
		if depth == k {
			fn(idx)
			return
		}
		for i := start; i < n; i++ {
			idx[depth] = i
			rec(i+1, depth+1)
		}
	}
	rec(0, 0)
}

// TestKnownAnswerVectors checks shares made by an independent Python
// implementation (testdata/gen_vectors.py): evaluation reproduces each share
// and every threshold subset recovers the secret.
func TestKnownAnswerVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			secret, xs := vectors.Hex(t, v.Secret), vectors.Hex(t, v.Xs)
			shares := make([][]byte, len(v.Shares))
			for i, s := range v.Shares {
				shares[i] = vectors.Hex(t, s)
				for j := range secret {
					if got := evaluate(secret[j], vectors.Hex(t, v.Coefficients[j]), xs[i]); got != shares[i][j] {
						t.Fatalf("share %d byte %d: evaluate = %#x, vector %#x", i, j, got, shares[i][j])
					}
				}
			}
			subsets(len(shares), v.Threshold, func(idx []int) {
				sub := make([][]byte, len(idx))
				for i, k := range idx {
					sub[i] = shares[k]
				}
				got, err := Combine(sub)
				if err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("Combine(%v) = %x, %v; want %x", idx, got, err, secret)
				}
			})
		})
	}
}

func TestSplitCombineProperty(t *testing.T) {
	src, r := seededRand(t)
	iterations := 300
	if testing.Short() {
		iterations = 50
	}
	for range iterations {
		parts := 2 + r.IntN(MaxParts-1)
		threshold := 2 + r.IntN(parts-1)
		if r.IntN(4) == 0 { // favour small, common configurations too
			parts, threshold = 2+r.IntN(9), 2
			threshold += r.IntN(parts - 1)
		}
		secret := make([]byte, 16+r.IntN(48))
		src.Read(secret)
		shares, err := Split(secret, parts, threshold, src)
		if err != nil {
			t.Fatalf("Split(%d, %d): %v", parts, threshold, err)
		}
		if len(shares) != parts {
			t.Fatalf("got %d shares, want %d", len(shares), parts)
		}
		seen := map[byte]bool{}
		for _, s := range shares {
			if len(s) != len(secret)+1 || s[len(s)-1] == 0 || seen[s[len(s)-1]] {
				t.Fatalf("bad share shape or x coordinate: len %d x %#x", len(s), s[len(s)-1])
			}
			seen[s[len(s)-1]] = true
		}
		r.Shuffle(len(shares), func(i, j int) { shares[i], shares[j] = shares[j], shares[i] })
		// Any threshold (or more) shares recover the secret.
		n := threshold + r.IntN(parts-threshold+1)
		got, err := Combine(shares[:n])
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Combine %d of %d (T=%d) = %x, %v; want %x", n, parts, threshold, got, err, secret)
		}
		// threshold-1 shares give some other value (equal with prob 2^-128).
		got, err = Combine(shares[:threshold-1])
		if err != nil {
			t.Fatalf("Combine T-1: %v", err)
		}
		if bytes.Equal(got, secret) {
			t.Fatalf("T-1 = %d shares recovered the secret (parts %d)", threshold-1, parts)
		}
	}
}

// TestOneShareRevealsNothing: for a 1-byte secret with T=2, a single share
// (x, y) is consistent with every candidate secret through exactly one
// polynomial, and y is uniformly distributed whatever the secret.
func TestOneShareRevealsNothing(t *testing.T) {
	src, _ := seededRand(t)
	for range 16 {
		shares, err := Split([]byte{0x42}, 3, 2, src)
		if err != nil {
			t.Fatal(err)
		}
		y, x := shares[0][0], shares[0][1]
		for cand := range 256 {
			n := 0
			for c := range 256 {
				if evaluate(byte(cand), []byte{byte(c)}, x) == y {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("share (%#x, %#x): candidate %#x fits %d polynomials, want 1", x, y, cand, n)
			}
		}
	}

	// Chi-square of y over 256 bins, for two very different secrets; a fixed
	// seed keeps it deterministic. 255 d.o.f.: mean 255, sd ~22.6; 400 is
	// beyond 6 sd.
	for _, secret := range []byte{0x00, 0xff} {
		src := mrand.NewChaCha8([32]byte{secret, 1})
		const perBin = 200
		var counts [256]int
		for range 256 * perBin {
			shares, err := Split([]byte{secret}, 2, 2, src)
			if err != nil {
				t.Fatal(err)
			}
			counts[shares[0][0]]++
		}
		chi := 0.0
		for _, c := range counts {
			d := float64(c - perBin)
			chi += d * d / perBin
		}
		if chi > 400 {
			t.Errorf("secret %#x: share y not uniform, chi-square %.1f", secret, chi)
		}
	}
}

func TestSplitOneOfOne(t *testing.T) {
	secret := []byte("root key bytes")
	shares, err := Split(secret, 1, 1, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 1 || !bytes.Equal(shares[0][:len(secret)], secret) || shares[0][len(secret)] == 0 {
		t.Fatalf("1-of-1 share = %x", shares[0])
	}
	got, err := Combine(shares)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Combine = %x, %v", got, err)
	}
}

func TestSplitErrors(t *testing.T) {
	cases := []struct {
		name             string
		secret           []byte
		parts, threshold int
		rand             io.Reader
		want             error
	}{
		{"empty secret", nil, 3, 2, crand.Reader, ErrEmptySecret},
		{"zero parts", []byte("s"), 0, 0, crand.Reader, ErrInvalidParams},
		{"too many parts", []byte("s"), 256, 2, crand.Reader, ErrInvalidParams},
		{"threshold above parts", []byte("s"), 3, 4, crand.Reader, ErrInvalidParams},
		{"threshold zero", []byte("s"), 3, 0, crand.Reader, ErrInvalidParams},
		{"threshold one of many", []byte("s"), 3, 1, crand.Reader, ErrInvalidParams},
		{"negative", []byte("s"), -1, -1, crand.Reader, ErrInvalidParams},
		{"nil rand", []byte("s"), 3, 2, nil, ErrInvalidParams},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			shares, err := Split(c.secret, c.parts, c.threshold, c.rand)
			if !errors.Is(err, c.want) || shares != nil {
				t.Fatalf("Split = %v, %v; want %v", shares, err, c.want)
			}
		})
	}
}

var errBroken = errors.New("entropy source broken")

// failingReader returns n good bytes and then errBroken.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBroken
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

func TestSplitFailsClosedOnRandError(t *testing.T) {
	for _, good := range []int{0, 10, 64, 70, 127} {
		shares, err := Split(make([]byte, 32), 5, 3, &failingReader{n: good})
		if !errors.Is(err, errBroken) || shares != nil {
			t.Fatalf("after %d good bytes: Split = %d shares, %v; want errBroken", good, len(shares), err)
		}
	}
}

func TestCombineErrors(t *testing.T) {
	cases := []struct {
		name   string
		shares [][]byte
		want   error
	}{
		{"none", nil, ErrTooFewShares},
		{"empty list", [][]byte{}, ErrTooFewShares},
		{"one byte share", [][]byte{{1}}, ErrShareTooShort},
		{"empty share", [][]byte{{1, 2}, {}}, ErrShareTooShort},
		{"nil share", [][]byte{nil, {1, 2}}, ErrShareTooShort},
		{"length mismatch", [][]byte{{1, 2, 3}, {1, 2}}, ErrShareLengthMismatch},
		{"zero x", [][]byte{{1, 2}, {3, 0}}, ErrZeroX},
		{"single zero x", [][]byte{{1, 0}}, ErrZeroX},
		{"duplicate x", [][]byte{{1, 7}, {2, 7}}, ErrDuplicateX},
		{"identical shares", [][]byte{{1, 2, 9}, {1, 2, 9}}, ErrDuplicateX},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Combine(c.shares)
			if !errors.Is(err, c.want) || got != nil {
				t.Fatalf("Combine = %x, %v; want %v", got, err, c.want)
			}
		})
	}
	// 256 shares cannot all have distinct non-zero x.
	many := make([][]byte, 256)
	for i := range many {
		many[i] = []byte{0, byte(i + 1)}
	}
	if _, err := Combine(many); !errors.Is(err, ErrZeroX) && !errors.Is(err, ErrDuplicateX) {
		t.Fatalf("256 shares: %v", err)
	}
}

func TestCombineDoesNotAliasShares(t *testing.T) {
	share := []byte{5, 6, 7, 1}
	got, err := Combine([][]byte{share})
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 0xee
	if share[0] != 5 {
		t.Fatal("Combine result aliases the share")
	}
}

func FuzzCombine(f *testing.F) {
	f.Add([]byte{2, 1, 7, 2, 9})
	f.Add([]byte{})
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// data[0] = share count (mod 8, +1); the rest split evenly; a second
		// byte, when present, trims the last share to test unequal lengths.
		if len(data) < 2 {
			_, _ = Combine([][]byte{data})
			return
		}
		n := int(data[0])%8 + 1
		trim := int(data[1]) % 3
		body := data[2:]
		size := len(body) / n
		shares := make([][]byte, n)
		for i := range shares {
			shares[i] = body[i*size : (i+1)*size]
		}
		if trim > 0 && size >= trim {
			shares[n-1] = shares[n-1][:size-trim]
		}
		got, err := Combine(shares)
		if err != nil {
			return
		}
		// Interpolation is independent of share order.
		rev := make([][]byte, n)
		for i := range shares {
			rev[n-1-i] = shares[i]
		}
		again, err := Combine(rev)
		if err != nil || !bytes.Equal(got, again) {
			t.Fatalf("order changed result: %x vs %x (%v)", got, again, err)
		}
		if len(got) != len(shares[0])-1 {
			t.Fatalf("result length %d, share length %d", len(got), len(shares[0]))
		}
	})
}

func BenchmarkSplit32Bytes5of3(b *testing.B) {
	secret := make([]byte, 32)
	for b.Loop() {
		if _, err := Split(secret, 5, 3, crand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCombine32Bytes3(b *testing.B) {
	shares, err := Split(make([]byte, 32), 5, 3, crand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Combine(shares[:3]); err != nil {
			b.Fatal(err)
		}
	}
}
