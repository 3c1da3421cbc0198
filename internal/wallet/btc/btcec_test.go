package btc

import (
	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

func signBtcec(priv *btcec.PrivateKey, hash []byte) []byte {
	return becdsa.Sign(priv, hash).Serialize()
}
