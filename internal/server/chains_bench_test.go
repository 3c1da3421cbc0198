package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"

	"github.com/moonvault/moonvault/internal/config"
)

// BenchmarkChainSignHTTPS compares the sign path of each chain on one
// server over real HTTPS (TLS, JWT, policy, key cache, chain parse and
// intent, signature, audit to a file with group commit): Ethereum
// EIP-191 sign-message, a Bitcoin P2WPKH PSBT (one input with its previous
// transaction, two outputs), a Solana System transfer, and a Solana
// message. Compare req/s between the sub-benchmarks.
//
//	go test -run '^$' -bench ChainSignHTTPS -benchtime 5s ./internal/server
func BenchmarkChainSignHTTPS(b *testing.B) {
	tn := startNode(b, b.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.AuditFile = b.TempDir() + "/audit.log" }})
	tn.token = initShamir(b, tn)
	var eth, btc, sola struct{ Address string }
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "eth"}, &eth)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "btc", "chain": "bitcoin"}, &btc)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "sol", "chain": "solana"}, &sola)

	cases := []struct {
		name, path string
		body       []byte
	}{
		{"ethereum-message", "/v1/accounts/eth/sign-message", []byte(`{"data":"hello","encoding":"utf8"}`)},
		{"bitcoin-p2wpkh-psbt", "/v1/accounts/btc/sign-psbt", benchPSBT(b, btc.Address)},
		{"solana-transfer", "/v1/accounts/sol/sign-transaction", benchSolanaTx(b, sola.Address)},
		{"solana-message", "/v1/accounts/sol/sign-message", []byte(`{"data":"hello","encoding":"utf8"}`)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tn.pool, MinVersion: tls.VersionTLS13}, MaxIdleConnsPerHost: 256, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			url := tn.url + c.path
			b.SetParallelism(32) // 32 x GOMAXPROCS connections
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", url, bytes.NewReader(c.body))
					req.Header.Set("Authorization", "Bearer "+tn.token)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// benchPSBT is a sign-psbt body: a P2WPKH coin of addr (with its previous
// transaction) paid to another address and back to addr.
func benchPSBT(b *testing.B, addr string) []byte {
	script := payTo(b, addr)
	fund := wire.NewMsgTx(2)
	fund.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{9}, 1), nil, nil))
	fund.AddTxOut(wire.NewTxOut(100_000, script))
	h := fund.TxHash()
	spend := wire.NewMsgTx(2)
	spend.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&h, 0), nil, nil))
	dest := sha256.Sum256([]byte("dest"))
	spend.AddTxOut(wire.NewTxOut(60_000, append([]byte{txscript.OP_0, 20}, dest[:20]...)))
	spend.AddTxOut(wire.NewTxOut(39_000, script))
	p, err := psbt.NewFromUnsignedTx(spend)
	if err != nil {
		b.Fatal(err)
	}
	p.Inputs[0].NonWitnessUtxo = fund
	p.Inputs[0].WitnessUtxo = fund.TxOut[0]
	enc, _ := p.B64Encode()
	body, _ := json.Marshal(map[string]any{"psbt": enc, "finalize": true})
	return body
}

// benchSolanaTx is a sign-transaction body: a System transfer from addr.
func benchSolanaTx(b *testing.B, addr string) []byte {
	me := sol.MustPublicKeyFromBase58(addr)
	dest := sol.PublicKeyFromBytes(bytes.Repeat([]byte{5}, 32))
	body, _ := json.Marshal(map[string]string{"transaction": solWire(b, me, system.NewTransferInstruction(1_000, me, dest).Build())})
	return body
}
