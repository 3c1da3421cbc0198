package evm

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ethereum/go-ethereum/common/hexutil"
)

// MaxMessageSize bounds the data of an EIP-191 message, after decoding.
const MaxMessageSize = 128 << 10

// Message encodings.
const (
	EncodingUTF8 = "utf8" // the text's UTF-8 bytes (the REST default)
	EncodingHex  = "hex"  // hex, with or without 0x
	// EncodingAuto is what eth_sign and personal_sign clients send:
	// 0x-hex bytes, or else a plain UTF-8 string (as MetaMask and ethers
	// accept).
	EncodingAuto = "auto"
)

// DecodeMessage is the one decoder of message data, REST and JSON-RPC:
// data in the given encoding ("" is utf8), at most MaxMessageSize bytes.
// Errors name the field "data".
func DecodeMessage(data, encoding string) ([]byte, error) {
	if encoding == EncodingAuto {
		encoding = EncodingUTF8
		if strings.HasPrefix(data, "0x") || strings.HasPrefix(data, "0X") {
			encoding = EncodingHex
		}
	}
	var b []byte
	switch encoding {
	case "", EncodingUTF8:
		if !utf8.ValidString(data) {
			return nil, fieldErr("data", "is not valid UTF-8")
		}
		b = []byte(data)
	case EncodingHex:
		if !strings.HasPrefix(data, "0x") && !strings.HasPrefix(data, "0X") {
			data = "0x" + data
		}
		d, err := hexutil.Decode(data)
		if err != nil {
			return nil, fieldErr("data", "is not valid hex: "+err.Error())
		}
		b = d
	default:
		return nil, fieldErr("encoding", `must be "utf8" or "hex"`)
	}
	if len(b) > MaxMessageSize {
		return nil, fieldErr("data", "exceeds the size limit of "+strconv.Itoa(MaxMessageSize)+" bytes")
	}
	return b, nil
}
