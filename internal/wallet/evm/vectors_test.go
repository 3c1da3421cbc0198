package evm

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// vector is one file of testdata/: good_* style files carry expectations,
// fail_* files name the field the error must report.
type vector struct {
	Kind        string          `json:"kind"`
	Key         string          `json:"key"`
	KeyKeccakOf string          `json:"keyKeccakOf"`
	Input       json.RawMessage `json:"input"`
	Field       string          `json:"field"`
	Expect      struct {
		Raw       string `json:"raw"`
		Sender    string `json:"sender"`
		Hash      string `json:"hash"`
		Signature string `json:"signature"`
	} `json:"expect"`
}

func TestVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) < 10 {
		t.Fatalf("test vectors missing: %v (%d files)", err, len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var v vector
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(name, "fail_") {
				checkFail(t, v)
				return
			}
			checkGood(t, v)
		})
	}
}

func checkFail(t *testing.T, v vector) {
	t.Helper()
	var err error
	switch v.Kind {
	case "transaction":
		_, _, err = ParseTransaction(v.Input)
	case "typedData":
		_, err = ParseTypedData(v.Input)
	default:
		t.Fatalf("unknown kind %q", v.Kind)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a *FieldError naming %q, got %v", v.Field, err)
	}
	if fe.Name != v.Field {
		t.Fatalf("error names field %q, want %q (%v)", fe.Name, v.Field, err)
	}
	if !strings.HasPrefix(err.Error(), "invalid "+v.Field+": ") {
		t.Fatalf("error text %q does not start with the field", err)
	}
}

func checkGood(t *testing.T, v vector) {
	t.Helper()
	key := vectorKey(t, v)
	switch v.Kind {
	case "transaction":
		tx, chainID, err := ParseTransaction(v.Input)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := SignTransaction(tx, chainID, key)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := signed.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if got := hexutil.Encode(raw); got != v.Expect.Raw {
			t.Fatalf("raw tx\n got %s\nwant %s", got, v.Expect.Raw)
		}
		from, err := types.Sender(types.LatestSignerForChainID(chainID), signed)
		if err != nil || from != crypto.PubkeyToAddress(key.PublicKey) {
			t.Fatalf("sender %s, %v", from, err)
		}
		if v.Expect.Sender != "" && from != common.HexToAddress(v.Expect.Sender) {
			t.Fatalf("sender %s, want %s", from, v.Expect.Sender)
		}
	case "typedData":
		td, err := ParseTypedData(v.Input)
		if err != nil {
			t.Fatal(err)
		}
		sig, hash, err := SignTypedData(td, key)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexutil.Encode(hash); got != v.Expect.Hash {
			t.Fatalf("digest %s, want %s", got, v.Expect.Hash)
		}
		if v.Expect.Signature != "" && hexutil.Encode(sig) != v.Expect.Signature {
			t.Fatalf("signature\n got %x\nwant %s", sig, v.Expect.Signature)
		}
		if sig[64] != 27 && sig[64] != 28 {
			t.Fatalf("v = %d", sig[64])
		}
	default:
		t.Fatalf("unknown kind %q", v.Kind)
	}
}

func vectorKey(t *testing.T, v vector) *ecdsa.PrivateKey {
	t.Helper()
	var b []byte
	switch {
	case v.KeyKeccakOf != "":
		b = crypto.Keccak256([]byte(v.KeyKeccakOf))
	default:
		b = common.FromHex(v.Key)
	}
	k, err := crypto.ToECDSA(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseTypedDataStringEqualsObject(t *testing.T) {
	b, _ := os.ReadFile("testdata/eip712_mail.json")
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	s, _ := json.Marshal(string(v.Input))
	a, err := ParseTypedData(v.Input)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseTypedData(s)
	if err != nil {
		t.Fatal(err)
	}
	ha, _ := TypedDataHash(a)
	hc, _ := TypedDataHash(c)
	if !bytes.Equal(ha, hc) {
		t.Fatalf("string form hashes differently")
	}
}
