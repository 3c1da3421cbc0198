package evm

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto/kzg4844"
	"github.com/holiman/uint256"
)

// MaxDataSize bounds a transaction's calldata. Larger payloads are refused:
// the signer is not a place for contract deployments of unbounded size.
const MaxDataSize = 128 << 10

// txFields lists the members a transaction object may carry. Anything else
// is refused rather than silently ignored: a field the signer drops (a blob
// sidecar, a "gasLimit" spelled differently by some client, a signature) is
// one the caller believed would be bound by the signature.
var txFields = map[string]bool{
	"type": true, "chainId": true, "nonce": true, "to": true, "from": true,
	"value": true, "gas": true, "gasLimit": true, "gasPrice": true,
	"maxFeePerGas": true, "maxPriorityFeePerGas": true, "data": true,
	"input": true, "accessList": true, "maxFeePerBlobGas": true,
	"blobVersionedHashes": true, "authorizationList": true,
}

// Tx is a transaction object, parsed once: the unsigned transaction, the
// chain it is for, and the `from` it names (nil when absent), which the
// sign pipeline compares with, or uses to find, the signing account.
type Tx struct {
	Tx      *types.Transaction
	ChainID *big.Int
	From    *common.Address
}

// ParseTx parses a JSON-RPC transaction object (as sent to
// eth_signTransaction) in one pass.
//
// chainId, nonce and gas are required: a remote signer has no node to fill
// them in. `gasLimit` is accepted as an alias of `gas` (ethers), `input` of
// `data` (both given: must be equal). Unknown members are refused with a
// FieldError.
func ParseTx(raw json.RawMessage) (*Tx, error) {
	if err := checkJSON("transaction", raw); err != nil {
		return nil, err
	}
	f, err := decodeObject("transaction", raw)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(f) {
		if !txFields[k] {
			return nil, fieldErr(k, "unknown transaction field")
		}
	}
	p := txParser{f: f}
	tx, chainID, err := p.parse()
	if err != nil {
		return nil, err
	}
	out := &Tx{Tx: tx, ChainID: chainID}
	if !isNull(f["from"]) {
		from, err := parseAddressJSON("from", f["from"])
		if err != nil {
			return nil, err
		}
		out.From = &from
	}
	return out, nil
}

// ParseTransaction is ParseTx without `from`.
func ParseTransaction(raw json.RawMessage) (*types.Transaction, *big.Int, error) {
	t, err := ParseTx(raw)
	if err != nil {
		return nil, nil, err
	}
	return t.Tx, t.ChainID, nil
}

type txParser struct {
	f   map[string]json.RawMessage
	err error
}

func (p *txParser) has(k string) bool { return !isNull(p.f[k]) }

// quantity reads an optional quantity; absent yields nil.
func (p *txParser) quantity(k string, bits int) *big.Int {
	if p.err != nil || !p.has(k) {
		return nil
	}
	v, err := parseQuantity(k, p.f[k], bits)
	if err != nil {
		p.err = err
	}
	return v
}

func (p *txParser) required(k string, bits int) *big.Int {
	if p.err == nil && !p.has(k) {
		p.err = fieldErr(k, "required")
		return nil
	}
	return p.quantity(k, bits)
}

func (p *txParser) parse() (*types.Transaction, *big.Int, error) {
	typ := p.txType()
	chainID := p.required("chainId", 256)
	nonce := p.required("nonce", 64)
	gas := p.gas()
	value := p.quantity("value", 256)
	data := p.data()
	to := p.to()
	if p.err != nil {
		return nil, nil, p.err
	}
	if chainID.Sign() == 0 {
		return nil, nil, fieldErr("chainId", "must be positive (EIP-155)")
	}
	if value == nil {
		value = new(big.Int)
	}
	if err := p.refuseForType(typ); err != nil {
		return nil, nil, err
	}
	var inner types.TxData
	switch typ {
	case types.LegacyTxType, types.AccessListTxType:
		gasPrice := p.required("gasPrice", 256)
		acl := p.accessList()
		if p.err != nil {
			return nil, nil, p.err
		}
		if typ == types.LegacyTxType {
			inner = &types.LegacyTx{Nonce: nonce.Uint64(), GasPrice: gasPrice, Gas: gas, To: to, Value: value, Data: data}
		} else {
			inner = &types.AccessListTx{ChainID: chainID, Nonce: nonce.Uint64(), GasPrice: gasPrice, Gas: gas, To: to, Value: value, Data: data, AccessList: acl}
		}
	case types.DynamicFeeTxType:
		tip, fee := p.fees()
		acl := p.accessList()
		if p.err != nil {
			return nil, nil, p.err
		}
		inner = &types.DynamicFeeTx{ChainID: chainID, Nonce: nonce.Uint64(), GasTipCap: tip, GasFeeCap: fee, Gas: gas, To: to, Value: value, Data: data, AccessList: acl}
	case types.BlobTxType:
		tip, fee := p.fees()
		acl := p.accessList()
		blobFee := p.required("maxFeePerBlobGas", 256)
		hashes := p.blobHashes()
		if p.err == nil && to == nil {
			p.err = fieldErr("to", "required for a blob transaction (EIP-4844 forbids contract creation)")
		}
		if p.err != nil {
			return nil, nil, p.err
		}
		inner = &types.BlobTx{ChainID: u256(chainID), Nonce: nonce.Uint64(), GasTipCap: u256(tip), GasFeeCap: u256(fee), Gas: gas, To: *to, Value: u256(value), Data: data, AccessList: acl, BlobFeeCap: u256(blobFee), BlobHashes: hashes}
	case types.SetCodeTxType:
		tip, fee := p.fees()
		acl := p.accessList()
		auths := p.authorizations()
		if p.err == nil && to == nil {
			p.err = fieldErr("to", "required for a set-code transaction (EIP-7702 forbids contract creation)")
		}
		if p.err != nil {
			return nil, nil, p.err
		}
		inner = &types.SetCodeTx{ChainID: u256(chainID), Nonce: nonce.Uint64(), GasTipCap: u256(tip), GasFeeCap: u256(fee), Gas: gas, To: *to, Value: u256(value), Data: data, AccessList: acl, AuthList: auths}
	}
	return types.NewTx(inner), chainID, nil
}

// txType reads `type`, or infers it from the fields present.
func (p *txParser) txType() uint8 {
	if p.has("type") {
		t := p.quantity("type", 64)
		if p.err != nil {
			return 0
		}
		if !t.IsUint64() || t.Uint64() > types.SetCodeTxType {
			p.err = fieldErr("type", fmt.Sprintf("unsupported transaction type %s (supported: 0-4)", t))
			return 0
		}
		return uint8(t.Uint64()) // #nosec G115 -- checked <= SetCodeTxType (4) above
	}
	switch {
	case p.has("maxFeePerBlobGas") || p.has("blobVersionedHashes"):
		return types.BlobTxType
	case p.has("authorizationList"):
		return types.SetCodeTxType
	case p.has("maxFeePerGas") || p.has("maxPriorityFeePerGas"):
		return types.DynamicFeeTxType
	case p.has("accessList"):
		return types.AccessListTxType
	}
	return types.LegacyTxType
}

// refuseForType refuses fields the chosen type cannot carry, so that a
// fee or list the caller set is never dropped from what gets signed.
func (p *txParser) refuseForType(typ uint8) error {
	allowed := map[uint8][]string{
		types.LegacyTxType:     {"gasPrice"},
		types.AccessListTxType: {"gasPrice", "accessList"},
		types.DynamicFeeTxType: {"maxFeePerGas", "maxPriorityFeePerGas", "accessList"},
		types.BlobTxType:       {"maxFeePerGas", "maxPriorityFeePerGas", "accessList", "maxFeePerBlobGas", "blobVersionedHashes"},
		types.SetCodeTxType:    {"maxFeePerGas", "maxPriorityFeePerGas", "accessList", "authorizationList"},
	}[typ]
	for _, k := range []string{"gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "accessList", "maxFeePerBlobGas", "blobVersionedHashes", "authorizationList"} {
		if p.has(k) && !slices.Contains(allowed, k) {
			return fieldErr(k, fmt.Sprintf("not allowed in a type %d transaction", typ))
		}
	}
	return nil
}

func (p *txParser) gas() uint64 {
	g := p.quantity("gas", 64)
	gl := p.quantity("gasLimit", 64)
	if p.err != nil {
		return 0
	}
	switch {
	case g == nil && gl == nil:
		p.err = fieldErr("gas", "required")
		return 0
	case g != nil && gl != nil && g.Cmp(gl) != 0:
		p.err = fieldErr("gasLimit", "differs from gas")
		return 0
	case g == nil:
		g = gl
	}
	return g.Uint64()
}

func (p *txParser) fees() (tip, fee *big.Int) {
	fee = p.required("maxFeePerGas", 256)
	tip = p.required("maxPriorityFeePerGas", 256)
	if p.err == nil && tip.Cmp(fee) > 0 {
		p.err = fieldErr("maxPriorityFeePerGas", "exceeds maxFeePerGas")
	}
	return tip, fee
}

func (p *txParser) data() []byte {
	var out []byte
	for _, k := range []string{"data", "input"} {
		if p.err != nil || !p.has(k) {
			continue
		}
		s, err := decodeString(k, p.f[k])
		if err != nil {
			p.err = err
			return nil
		}
		if len(s) > 2+2*MaxDataSize {
			p.err = fieldErr(k, fmt.Sprintf("larger than %d bytes", MaxDataSize))
			return nil
		}
		b, err := parseHexBytes(k, s)
		if err != nil {
			p.err = err
			return nil
		}
		if out != nil && string(out) != string(b) {
			p.err = fieldErr("input", "differs from data")
			return nil
		}
		out = b
	}
	return out
}

func (p *txParser) to() *common.Address {
	if p.err != nil || !p.has("to") {
		return nil
	}
	a, err := parseAddressJSON("to", p.f["to"])
	if err != nil {
		p.err = err
		return nil
	}
	return &a
}

func (p *txParser) accessList() types.AccessList {
	if p.err != nil || !p.has("accessList") {
		return nil
	}
	items, err := decodeArray("accessList", p.f["accessList"])
	if err != nil {
		p.err = err
		return nil
	}
	acl := make(types.AccessList, 0, len(items))
	for i, it := range items {
		path := fmt.Sprintf("accessList[%d]", i)
		obj, err := decodeObject(path, it)
		if err != nil {
			p.err = err
			return nil
		}
		for _, k := range sortedKeys(obj) {
			if k != "address" && k != "storageKeys" {
				p.err = fieldErr(path+"."+k, "unknown field")
				return nil
			}
		}
		addr, err := parseAddressJSON(path+".address", obj["address"])
		if err != nil {
			p.err = err
			return nil
		}
		tuple := types.AccessTuple{Address: addr, StorageKeys: []common.Hash{}}
		if !isNull(obj["storageKeys"]) {
			keys, err := decodeArray(path+".storageKeys", obj["storageKeys"])
			if err != nil {
				p.err = err
				return nil
			}
			for j, k := range keys {
				h, err := parseHashJSON(fmt.Sprintf("%s.storageKeys[%d]", path, j), k)
				if err != nil {
					p.err = err
					return nil
				}
				tuple.StorageKeys = append(tuple.StorageKeys, h)
			}
		}
		acl = append(acl, tuple)
	}
	return acl
}

func (p *txParser) blobHashes() []common.Hash {
	if p.err != nil {
		return nil
	}
	if !p.has("blobVersionedHashes") {
		p.err = fieldErr("blobVersionedHashes", "required")
		return nil
	}
	items, err := decodeArray("blobVersionedHashes", p.f["blobVersionedHashes"])
	if err != nil {
		p.err = err
		return nil
	}
	if len(items) == 0 {
		p.err = fieldErr("blobVersionedHashes", "must not be empty (EIP-4844)")
		return nil
	}
	out := make([]common.Hash, len(items))
	for i, it := range items {
		path := fmt.Sprintf("blobVersionedHashes[%d]", i)
		h, err := parseHashJSON(path, it)
		if err != nil {
			p.err = err
			return nil
		}
		if !kzg4844.IsValidVersionedHash(h[:]) {
			p.err = fieldErr(path, "unsupported version byte (EIP-4844 requires 0x01)")
			return nil
		}
		out[i] = h
	}
	return out
}

var authFields = []string{"chainId", "address", "nonce", "yParity", "r", "s"}

func (p *txParser) authorizations() []types.SetCodeAuthorization {
	if p.err != nil {
		return nil
	}
	items, err := decodeArray("authorizationList", p.f["authorizationList"])
	if err != nil {
		p.err = err
		return nil
	}
	if len(items) == 0 {
		p.err = fieldErr("authorizationList", "must not be empty (EIP-7702)")
		return nil
	}
	out := make([]types.SetCodeAuthorization, len(items))
	for i, it := range items {
		a, err := parseAuthorization(fmt.Sprintf("authorizationList[%d]", i), it)
		if err != nil {
			p.err = err
			return nil
		}
		out[i] = a
	}
	return out
}

func parseAuthorization(path string, raw json.RawMessage) (types.SetCodeAuthorization, error) {
	var a types.SetCodeAuthorization
	obj, err := decodeObject(path, raw)
	if err != nil {
		return a, err
	}
	for _, k := range sortedKeys(obj) {
		if !slices.Contains(authFields, k) {
			return a, fieldErr(path+"."+k, "unknown field")
		}
	}
	for _, k := range authFields {
		if isNull(obj[k]) {
			return a, fieldErr(path+"."+k, "required")
		}
	}
	if a.Address, err = parseAddressJSON(path+".address", obj["address"]); err != nil {
		return a, err
	}
	bits := map[string]int{"chainId": 256, "nonce": 64, "yParity": 8, "r": 256, "s": 256}
	vals := map[string]*big.Int{}
	for _, k := range []string{"chainId", "nonce", "yParity", "r", "s"} {
		v, err := parseQuantity(path+"."+k, obj[k], bits[k])
		if err != nil {
			return a, err
		}
		vals[k] = v
	}
	if vals["yParity"].Uint64() > 1 {
		return a, fieldErr(path+".yParity", "must be 0 or 1")
	}
	a.ChainID = *u256(vals["chainId"])
	a.Nonce = vals["nonce"].Uint64()
	a.V = uint8(vals["yParity"].Uint64()) // #nosec G115 -- yParity is checked to be 0 or 1 just above
	a.R = *u256(vals["r"])
	a.S = *u256(vals["s"])
	// EIP-7702: an authorization whose signer cannot be recovered is skipped
	// by the chain; refusing it here tells the caller instead.
	if _, err := a.Authority(); err != nil {
		return a, fieldErr(path, "signature does not recover an authority")
	}
	return a, nil
}

func u256(b *big.Int) *uint256.Int {
	v, _ := uint256.FromBig(b) // callers bound every value to 256 bits
	return v
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ErrChainMismatch means a typed transaction names a different chain than
// the one it is being signed for.
var ErrChainMismatch = errkind.New(errkind.Invalid, "", "transaction chain id differs from signing chain id")

// SignTransaction signs tx for chainID with go-ethereum's latest signer
// (EIP-155 for legacy transactions, the typed-transaction signers for 1-4).
func SignTransaction(tx *types.Transaction, chainID *big.Int, key *ecdsa.PrivateKey) (*types.Transaction, error) {
	if tx == nil || key == nil {
		return nil, errors.New("evm: nil transaction or key")
	}
	if chainID == nil || chainID.Sign() <= 0 {
		return nil, fieldErr("chainId", "must be positive (EIP-155)")
	}
	if tx.Type() != types.LegacyTxType && tx.ChainId().Cmp(chainID) != 0 {
		return nil, &FieldError{Name: "chainId", Msg: ErrChainMismatch.Error(), Sentinel: ErrChainMismatch}
	}
	signed, err := types.SignTx(tx, types.LatestSignerForChainID(chainID), key)
	if err != nil {
		return nil, fmt.Errorf("evm: sign transaction: %w", err)
	}
	return signed, nil
}
