package evm

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
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
	Comment     string          `json:"comment"`
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
		// HashStruct is hashStruct(primaryType, message) and Encoded its
		// encodeData (EIP-712), for sources that publish them.
		HashStruct string `json:"hashStruct"`
		Encoded    string `json:"encoded"`
	} `json:"expect"`
	// Cases holds many vectors of one source in one file.
	Cases []vector `json:"cases"`
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
			check := checkGood
			switch {
			case strings.HasPrefix(name, "fail_"):
				check = checkFail
			case !strings.HasPrefix(name, "good_"):
				// A vector whose name says nothing would pass either way.
				t.Fatalf("name a vector good_* or fail_*")
			}
			if len(v.Cases) == 0 {
				check(t, v)
				return
			}
			for i, c := range v.Cases {
				name := c.Comment
				if name == "" {
					name = strconv.Itoa(i)
				}
				t.Run(name, func(t *testing.T) { check(t, c) })
			}
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
		if v.Expect.Hash == "" && v.Expect.Signature == "" && v.Expect.HashStruct == "" {
			t.Fatal("vector expects no digest, signature or hashStruct")
		}
		if v.Expect.Hash != "" && hexutil.Encode(hash) != v.Expect.Hash {
			t.Fatalf("digest %x, want %s", hash, v.Expect.Hash)
		}
		// RFC 6979 signatures are deterministic: an equal signature means
		// an equal digest.
		if v.Expect.Signature != "" && hexutil.Encode(sig) != v.Expect.Signature {
			t.Fatalf("signature\n got %x\nwant %s", sig, v.Expect.Signature)
		}
		if v.Expect.Encoded != "" {
			enc, err := td.EncodeData(td.PrimaryType, td.Message, 1)
			if err != nil || hexutil.Encode(enc) != v.Expect.Encoded {
				t.Fatalf("encodeData %x (%v), want %s", enc, err, v.Expect.Encoded)
			}
		}
		if v.Expect.HashStruct != "" {
			hs, err := td.HashStruct(td.PrimaryType, td.Message)
			if err != nil || hexutil.Encode(hs) != v.Expect.HashStruct {
				t.Fatalf("hashStruct %x (%v), want %s", []byte(hs), err, v.Expect.HashStruct)
			}
		}
		if sig[64] != 27 && sig[64] != 28 {
			t.Fatalf("v = %d", sig[64])
		}
	case "message":
		// EIP-191 version 0x45: input is the message as a JSON string of
		// 0x-hex bytes.
		var data string
		if err := json.Unmarshal(v.Input, &data); err != nil {
			t.Fatalf("message input: %v", err)
		}
		sig, hash, err := SignMessage(hexutil.MustDecode(data), key)
		if err != nil {
			t.Fatal(err)
		}
		if v.Expect.Signature == "" {
			t.Fatal("message vector without a signature")
		}
		if hexutil.Encode(sig) != v.Expect.Signature {
			t.Fatalf("signature\n got %x\nwant %s", sig, v.Expect.Signature)
		}
		if v.Expect.Hash != "" && hexutil.Encode(hash) != v.Expect.Hash {
			t.Fatalf("hash %x, want %s", hash, v.Expect.Hash)
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
	b, _ := os.ReadFile("testdata/good_eip712_mail.json")
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
