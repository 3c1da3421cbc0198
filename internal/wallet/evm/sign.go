package evm

import (
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
)

// SignMessage signs data as an EIP-191 version 0x45 ("personal_sign")
// message. The signature is r || s || v with v in {27, 28}, as wallets and
// ecrecover expect.
func SignMessage(data []byte, key *ecdsa.PrivateKey) (sig, hash []byte, err error) {
	if key == nil {
		return nil, nil, errors.New("evm: nil key")
	}
	hash = accounts.TextHash(data)
	sig, err = signHash(hash, key)
	return sig, hash, err
}

// SignTypedData signs the EIP-712 digest keccak256(0x19 0x01 ‖
// domainSeparator ‖ hashStruct(message)); v in {27, 28}. td should come
// from ParseTypedData.
func SignTypedData(td *apitypes.TypedData, key *ecdsa.PrivateKey) (sig, hash []byte, err error) {
	if td == nil || key == nil {
		return nil, nil, errors.New("evm: nil typed data or key")
	}
	if hash, err = hashTypedData(td); err != nil {
		return nil, nil, fieldErr("typedData", err.Error())
	}
	sig, err = signHash(hash, key)
	return sig, hash, err
}

// TypedDataHash returns the EIP-712 digest of td.
func TypedDataHash(td *apitypes.TypedData) ([]byte, error) {
	h, err := hashTypedData(td)
	if err != nil {
		return nil, fieldErr("typedData", err.Error())
	}
	return h, nil
}

// hashTypedData runs go-ethereum's EIP-712 encoder, converting a panic on
// input it does not expect into an error: ParseTypedData validates first,
// this is the last line of defence.
func hashTypedData(td *apitypes.TypedData) (hash []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			hash, err = nil, fmt.Errorf("typed data cannot be encoded")
		}
	}()
	hash, _, err = apitypes.TypedDataAndHash(*td)
	return hash, err
}

func signHash(hash []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	sig, err := crypto.Sign(hash, key)
	if err != nil {
		return nil, fmt.Errorf("evm: sign: %w", err)
	}
	sig[crypto.RecoveryIDOffset] += 27 // Yellow Paper v; EIP-191/712 verifiers expect 27/28
	return sig, nil
}
