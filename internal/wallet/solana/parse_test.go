package solana

import (
	"bufio"
	"encoding/base64"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"

	"github.com/moonvault/moonvault/internal/errkind"
)

// failCases spoils a good transfer in every way the parser must refuse.
// Each maps to the field its error must name.
func failCases(t testing.TB) (me *signer, cases map[string]struct{ enc, field string }) {
	me = newSigner(t, "me")
	dest := newSigner(t, "dest").pub
	good := buildTx(t, me.pub, []sol.Instruction{system.NewTransferInstruction(5, me.pub, dest).Build()})
	raw, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	spoilMsg := func(f func(m *sol.Message)) string {
		tx := buildTx(t, me.pub, []sol.Instruction{system.NewTransferInstruction(5, me.pub, dest).Build()})
		f(&tx.Message)
		b, err := tx.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return enc(b)
	}
	v0 := buildTx(t, me.pub, []sol.Instruction{system.NewTransferInstruction(5, me.pub, dest).Build()},
		sol.TransactionAddressTables(map[sol.PublicKey]sol.PublicKeySlice{newSigner(t, "table").pub: {dest}}))
	v0raw, _ := v0.MarshalBinary()
	v1 := append([]byte(nil), v0raw...)
	v1[1+64] = 0x81 // message version 1
	twoSlots := append([]byte{2}, append(make([]byte, 64), raw[1:]...)...)
	nonCanon := append([]byte{0x81, 0x00}, raw[1:]...)
	cases = map[string]struct{ enc, field string }{
		"empty":                    {"", "transaction"},
		"not base64":               {"AQ!!", "transaction"},
		"line break":               {enc(raw)[:10] + "\n" + enc(raw)[10:], "transaction"},
		"unpadded":                 {strings.TrimRight(enc(raw[:len(raw)-1]), "="), "transaction"},
		"oversized":                {enc(make([]byte, MaxTransactionSize+1)), "transaction"},
		"truncated":                {enc(raw[:len(raw)-5]), "transaction.message"},
		"trailing byte":            {enc(append(append([]byte(nil), raw...), 0)), "transaction.message"},
		"no message":               {enc(raw[:65]), "transaction.message"},
		"no signature count":       {enc([]byte{0x80}), "transaction"},
		"more slots than required": {enc(twoSlots), "transaction"},
		"non-canonical slot count": {enc(nonCanon), "transaction"},
		"message version 1":        {enc(v1), "transaction.message"},
		"no required signature":    {spoilMsg(func(m *sol.Message) { m.Header.NumRequiredSignatures = 0 }), "transaction.message.header"},
		"read-only fee payer":      {spoilMsg(func(m *sol.Message) { m.Header.NumReadonlySignedAccounts = 1 }), "transaction.message.header"},
		"too many read-only":       {spoilMsg(func(m *sol.Message) { m.Header.NumReadonlyUnsignedAccounts = 9 }), "transaction.message.header"},
		"program is the fee payer": {spoilMsg(func(m *sol.Message) { m.Instructions[0].ProgramIDIndex = 0 }), "transaction.message.instructions[0].program_id_index"},
		"program index too large":  {spoilMsg(func(m *sol.Message) { m.Instructions[0].ProgramIDIndex = 3 }), "transaction.message.instructions[0].program_id_index"},
		"account index too large":  {spoilMsg(func(m *sol.Message) { m.Instructions[0].Accounts[1] = 200 }), "transaction.message.instructions[0].accounts[1]"},
		"an account listed twice":  {spoilMsg(func(m *sol.Message) { m.AccountKeys[1] = m.AccountKeys[0] }), "transaction.message.account_keys[1]"},
		"lookup loading no account": {spoilMsg(func(m *sol.Message) {
			m.SetVersion(sol.MessageVersionV0)
			m.AddressTableLookups = []sol.MessageAddressTableLookup{{}}
		}), "transaction.message.address_table_lookups[0]"},
	}
	return me, cases
}

func TestParseFail(t *testing.T) {
	me, cases := failCases(t)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			checkRefused(t, c.enc, c.field, me.pub[:])
		})
	}
}

func checkRefused(t *testing.T, enc, field string, pub []byte) {
	t.Helper()
	_, err := ParseTransaction(enc, pub)
	var fe *errkind.Field
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a field error", err)
	}
	if !strings.HasPrefix(fe.Name, field) {
		t.Fatalf("error %v names %q, want %q", err, fe.Name, field)
	}
	if k := errkind.Of(err); k != errkind.Invalid && k != errkind.TooLarge {
		t.Fatalf("kind %v", k)
	}
}

// TestFailVectors runs testdata/fail_transactions.txt (written from
// failCases; regenerate with MV_WRITE_TESTDATA=1 when they change).
func TestFailVectors(t *testing.T) {
	me, cases := failCases(t)
	const file = "testdata/fail_transactions.txt"
	if os.Getenv("MV_WRITE_TESTDATA") == "1" {
		var b strings.Builder
		b.WriteString("# Solana wire transactions ParseTransaction refuses: name, tab, field, tab, quoted base64 (signer: sha256(\"me\"))\n")
		for _, name := range sortedNames(cases) {
			b.WriteString(name + "\t" + cases[name].field + "\t" + strconv.Quote(cases[name].enc) + "\n")
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		parts := strings.SplitN(sc.Text(), "\t", 3)
		if len(parts) != 3 {
			t.Fatalf("malformed line %q", sc.Text())
		}
		enc, err := strconv.Unquote(parts[2])
		if err != nil {
			t.Fatalf("%s: %v", parts[0], err)
		}
		n++
		t.Run(parts[0], func(t *testing.T) { checkRefused(t, enc, parts[1], me.pub[:]) })
	}
	if n != len(cases) {
		t.Fatalf("%d vectors in %s, %d cases in failCases: regenerate", n, file, len(cases))
	}
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
