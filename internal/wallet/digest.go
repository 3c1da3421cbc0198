package wallet

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// Digest says exactly what an account's key will sign for a request, so
// that an approver can check what they approve with their own tools
// (review M4): an approval shows it, and compares it again when the
// approved request is run.
type Digest struct {
	Algorithm string // keccak256, sha256
	Sum       []byte
	// Of names what was hashed (see the constants).
	Of string
}

// What a Digest is of.
const (
	// Ethereum: the hash the key signs (secp256k1 ECDSA over it), as
	// ethers computes it: hashMessage, TypedDataEncoder.hash,
	// Transaction.unsignedHash.
	DigestEIP191   = "eip191_message"
	DigestEIP712   = "eip712_typed_data"
	DigestEVMTx    = "evm_transaction_signing_hash"
	DigestSolTx    = "solana_transaction_message" // SHA-256 of the message bytes Ed25519 signs
	DigestSolMsg   = "solana_message_bytes"       // SHA-256 of the bytes Ed25519 signs
	DigestPSBT     = "psbt"                       // SHA-256 of the PSBT as received
	algoKeccak256  = "keccak256"
	algoSHA256     = "sha256"
	maxShortvecLen = 3
)

// SigningDigest is the digest of the request in for an account of
// chainName, after the chain's Parse accepted it (REST requests).
func SigningDigest(chainName string, in chain.Input) (*Digest, error) {
	switch chainName {
	case intent.ChainEthereum, "":
		switch in.Op {
		case chain.OpSignMessage:
			return EVMMessageDigest(in.Message), nil
		case chain.OpSignTypedData:
			td, err := evm.ParseTypedData(in.Document)
			if err != nil {
				return nil, err
			}
			return EVMTypedDataDigest(td)
		case chain.OpSignTransaction:
			t, err := evm.ParseTx(in.Document)
			if err != nil {
				return nil, err
			}
			return EVMTxDigest(t)
		}
	case intent.ChainSolana:
		switch in.Op {
		case chain.OpSignMessage:
			return sha(in.Message, DigestSolMsg), nil
		case chain.OpSignTransaction:
			msg, err := solanaMessage(in.Encoded)
			if err != nil {
				return nil, err
			}
			return sha(msg, DigestSolTx), nil
		}
	case intent.ChainBitcoin:
		if in.Op == chain.OpSignPSBT {
			raw, err := base64.StdEncoding.DecodeString(in.Encoded)
			if err != nil {
				return nil, fmt.Errorf("wallet: digest: psbt: %w", err)
			}
			return sha(raw, DigestPSBT), nil
		}
	}
	return nil, fmt.Errorf("wallet: no signing digest for %s %s", chainName, in.Op)
}

// EVMMessageDigest is the EIP-191 hash of data (personal_sign, eth_sign,
// sign-message).
func EVMMessageDigest(data []byte) *Digest {
	return &Digest{Algorithm: algoKeccak256, Sum: accounts.TextHash(data), Of: DigestEIP191}
}

// EVMTypedDataDigest is the EIP-712 hash of td.
func EVMTypedDataDigest(td *apitypes.TypedData) (*Digest, error) {
	h, err := evm.TypedDataHash(td)
	if err != nil {
		return nil, err
	}
	return &Digest{Algorithm: algoKeccak256, Sum: h, Of: DigestEIP712}, nil
}

// EVMTxDigest is the signing hash of t (EIP-155 / typed transactions), the
// signer evm.SignTransaction uses.
func EVMTxDigest(t *evm.Tx) (*Digest, error) {
	if t == nil || t.Tx == nil || t.ChainID == nil || t.ChainID.Sign() <= 0 {
		return nil, errors.New("wallet: digest: a transaction needs a positive chain id")
	}
	h := types.LatestSignerForChainID(t.ChainID).Hash(t.Tx)
	return &Digest{Algorithm: algoKeccak256, Sum: h[:], Of: DigestEVMTx}, nil
}

func sha(b []byte, of string) *Digest {
	s := sha256.Sum256(b)
	return &Digest{Algorithm: algoSHA256, Sum: s[:], Of: of}
}

// solanaMessage is the message of a base64 wire transaction, as received:
// after the compact-u16 count of signatures and the signatures.
func solanaMessage(encoded string) ([]byte, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("wallet: digest: transaction: %w", err)
	}
	n, off := 0, 0
	for shift := 0; ; shift += 7 {
		if off >= len(raw) || off == maxShortvecLen {
			return nil, errors.New("wallet: digest: transaction: bad signature count")
		}
		b := raw[off]
		off++
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	start := off + 64*n
	if start > len(raw) {
		return nil, errors.New("wallet: digest: transaction: truncated")
	}
	return raw[start:], nil
}
