package hd

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/vectors"
)

// TestBIP39Vectors runs the reference vectors (English, passphrase
// "TREZOR"): entropy -> mnemonic, mnemonic -> seed, seed -> BIP-32 master.
func TestBIP39Vectors(t *testing.T) {
	var f struct {
		Passphrase string
		Vectors    []struct{ Entropy, Mnemonic, Seed, Xprv string }
	}
	vectors.Read(t, "testdata/good_bip39_trezor.json", &f)
	if len(f.Vectors) != 24 {
		t.Fatalf("%d vectors, want 24", len(f.Vectors))
	}
	for i, v := range f.Vectors {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ent := vectors.Hex(t, v.Entropy)
			if len(ent) == EntropySize {
				m, err := NewMnemonic(ent)
				if err != nil {
					t.Fatal(err)
				}
				if m.Reveal() != v.Mnemonic {
					t.Fatalf("mnemonic = %q, want %q", m.Reveal(), v.Mnemonic)
				}
			}
			canon, err := NormalizeMnemonic(secret.String(v.Mnemonic))
			if err != nil || canon.Reveal() != v.Mnemonic {
				t.Fatalf("NormalizeMnemonic = %v, %v", canon.Reveal() == v.Mnemonic, err)
			}
			seed, err := Seed(secret.String(v.Mnemonic), secret.String(f.Passphrase))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(seed); got != v.Seed {
				t.Fatalf("seed = %s, want %s", got, v.Seed)
			}
			m, err := NewMaster(seed)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Destroy()
			k, err := m.derive(Path{})
			if err != nil {
				t.Fatal(err)
			}
			if xprv(k) != v.Xprv {
				t.Fatalf("master = %s, want %s", xprv(k), v.Xprv)
			}
		})
	}
}

func TestNewMnemonicEntropySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewMnemonic(make([]byte, n)); err == nil {
			t.Errorf("NewMnemonic(%d bytes) succeeded; only %d are allowed", n, EntropySize)
		}
	}
	m, err := NewMnemonic(make([]byte, EntropySize))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(m.Reveal())); n != 24 {
		t.Fatalf("%d words, want 24", n)
	}
	if fmt.Sprint(m) != "[redacted]" || fmt.Sprintf("%#v", m) != "[redacted]" {
		t.Fatal("a mnemonic prints itself")
	}
}

func TestMnemonicFail(t *testing.T) {
	var f struct {
		Cases []struct{ Name, Mnemonic, Want string }
	}
	vectors.Read(t, "testdata/fail_mnemonics.json", &f)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			_, err := NormalizeMnemonic(secret.String(c.Mnemonic))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.Want) {
				t.Fatalf("error %q does not say %q", err, c.Want)
			}
			if !errors.Is(err, ErrInvalidMnemonic) || errkind.Of(err) != errkind.Invalid {
				t.Fatalf("error %v is not an invalid-mnemonic error", err)
			}
			var fe *errkind.Field
			if !errors.As(err, &fe) || fe.Name != "mnemonic" {
				t.Fatalf("error %v does not name the mnemonic field", err)
			}
			// The error names positions, never words.
			for _, w := range strings.Fields(c.Mnemonic) {
				if len(w) > 3 && strings.Contains(err.Error(), w) {
					t.Fatalf("error %q reveals the word %q", err, w)
				}
			}
			if _, err := Seed(secret.String(c.Mnemonic), ""); err == nil {
				t.Fatal("Seed accepted an invalid mnemonic")
			}
		})
	}
	long := secret.String(strings.Repeat("abandon ", MaxMnemonicLen/8+1))
	if _, err := NormalizeMnemonic(long); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("an oversized mnemonic: %v", err)
	}
}

// TestMnemonicSpellings: case and white space do not change the seed.
func TestMnemonicSpellings(t *testing.T) {
	var f struct {
		Canonical string
		Spellings []string
	}
	vectors.Read(t, "testdata/good_mnemonic_spellings.json", &f)
	want, err := Seed(secret.String(f.Canonical), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Spellings {
		canon, err := NormalizeMnemonic(secret.String(s))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if canon.Reveal() != f.Canonical {
			t.Fatalf("%q normalised to %q", s, canon.Reveal())
		}
		got, err := Seed(secret.String(s), "")
		if err != nil || !got.Equal(want) {
			t.Fatalf("%q: a different seed (%v)", s, err)
		}
	}
}

// TestPassphraseNFKD: BIP-39 normalises the passphrase with NFKD, so a
// composed and a decomposed "é" give one seed.
func TestPassphraseNFKD(t *testing.T) {
	const m = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
	a, err := Seed(m, "caf\u00e9")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seed(m, "cafe\u0301")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := Seed(m, "cafe")
	if !a.Equal(b) || a.Equal(c) {
		t.Fatal("passphrase is not NFKD-normalised")
	}
}

func FuzzNormalizeMnemonic(f *testing.F) {
	f.Add("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	f.Add("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong")
	f.Add("ABANDON\u00a0abandon")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		canon, err := NormalizeMnemonic(secret.String(s))
		if err != nil {
			if !errors.Is(err, ErrInvalidMnemonic) {
				t.Fatalf("error without the sentinel: %v", err)
			}
			return
		}
		again, err := NormalizeMnemonic(canon)
		if err != nil || again != canon {
			t.Fatalf("not idempotent: %v", err)
		}
	})
}
