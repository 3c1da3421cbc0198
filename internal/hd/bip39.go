package hd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tyler-smith/go-bip39"
	"golang.org/x/text/unicode/norm"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secret"
)

// EntropySize is the entropy of a new wallet: 256 bits, a 24-word mnemonic.
const EntropySize = 32

// MaxMnemonicLen bounds the text an import may send (24 words of at most 8
// letters with separators is ~220 bytes).
const MaxMnemonicLen = 1024

// ErrInvalidMnemonic is the sentinel of every mnemonic error. The errors
// name a word's position, never a word: the mnemonic is the wallet.
var ErrInvalidMnemonic = errkind.New(errkind.Invalid, "invalid_mnemonic", "invalid mnemonic")

func mnemonicErr(msg string) error {
	return &errkind.Field{Name: "mnemonic", Msg: msg, Code: "invalid_mnemonic", Sentinel: ErrInvalidMnemonic}
}

// NewMnemonic returns the 24-word BIP-39 mnemonic of 32 bytes of entropy.
// The caller draws the entropy (the vault's augmented entropy reader) and
// wipes it afterwards.
func NewMnemonic(entropy []byte) (secret.String, error) {
	if len(entropy) != EntropySize {
		return "", fmt.Errorf("hd: mnemonic entropy must be %d bytes, got %d", EntropySize, len(entropy))
	}
	m, err := bip39.NewMnemonic(entropy)
	if err != nil {
		return "", fmt.Errorf("hd: mnemonic: %w", err)
	}
	return secret.String(m), nil
}

// NormalizeMnemonic checks an imported mnemonic and returns its canonical
// form: NFKD, lower case, words separated by one space (BIP-39 hashes the
// sentence, so two spellings of one mnemonic must give one seed). It
// accepts 12, 15, 18, 21 or 24 English words with a valid checksum.
func NormalizeMnemonic(m secret.String) (secret.String, error) {
	s := m.Reveal()
	if len(s) > MaxMnemonicLen {
		return "", mnemonicErr(fmt.Sprintf("longer than %d bytes", MaxMnemonicLen))
	}
	words := strings.Fields(strings.ToLower(norm.NFKD.String(s)))
	switch len(words) {
	case 12, 15, 18, 21, 24:
	default:
		return "", mnemonicErr(fmt.Sprintf("has %d words; a BIP-39 mnemonic has 12, 15, 18, 21 or 24", len(words)))
	}
	for i, w := range words {
		if _, ok := bip39.GetWordIndex(w); !ok {
			return "", mnemonicErr(fmt.Sprintf("word %d is not in the BIP-39 English word list", i+1))
		}
	}
	canon := strings.Join(words, " ")
	ent, err := bip39.EntropyFromMnemonic(canon)
	secret.Wipe(ent)
	switch {
	case errors.Is(err, bip39.ErrChecksumIncorrect):
		return "", mnemonicErr("checksum mismatch (a word is wrong or the words are out of order)")
	case err != nil:
		return "", mnemonicErr("not a BIP-39 mnemonic")
	}
	return secret.String(canon), nil
}

// Seed validates the mnemonic and returns its 64-byte BIP-39 seed:
// PBKDF2-HMAC-SHA512(mnemonic, "mnemonic" ‖ passphrase, 2048), both NFKD.
func Seed(mnemonic, passphrase secret.String) (secret.Bytes, error) {
	canon, err := NormalizeMnemonic(mnemonic)
	if err != nil {
		return nil, err
	}
	var seed []byte
	// BIP-39's PBKDF2 salt ("mnemonic" ‖ passphrase) may be shorter than
	// the 128 bits Go's FIPS 140-only mode requires: BIP-39 is outside the
	// FIPS boundary (docs/fips.md).
	fips.Outside(func() { seed = bip39.NewSeed(canon.Reveal(), norm.NFKD.String(passphrase.Reveal())) })
	return secret.Bytes(seed), nil
}
