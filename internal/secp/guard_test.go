package secp

import (
	"go/types"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// The module paths whose secret-key operations are variable time: btcec
// (an alias of decred's secp256k1 for its key types) and the btcd packages
// built on it.
const (
	decredKey = "github.com/decred/dcrd/dcrec/secp256k1/v4.PrivateKey"
	btcecKey  = "github.com/btcsuite/btcd/btcec/v2.PrivateKey" // an alias of decredKey, printed by its own name
	wif       = "github.com/btcsuite/btcd/btcutil.WIF"
	extKey    = "github.com/btcsuite/btcd/btcutil/hdkeychain.ExtendedKey"
)

// variableTimeFuncs multiply by a scalar without taking a private key
// type (so the type rule below does not see them).
var variableTimeFuncs = map[string]bool{
	"ScalarBaseMultNonConst": true, "ScalarMultNonConst": true, "GenerateSharedSecret": true,
}

// allowedExtKey are the only uses of hdkeychain's ExtendedKey in product
// code: building one from internal/hd's own derivation and serialising it.
var allowedExtKey = map[string]bool{"NewExtendedKey": true, "String": true}

// TestNoVariableTimeSecretOps keeps every multiplication by a secret
// scalar in this package. It type-checks the product's packages (tests
// aside: they use btcec as an oracle) and fails on any use, called or
// not, of:
//   - anything whose type holds btcec's (decred's) PrivateKey, whose
//     operations (PubKey, ecdsa.Sign, schnorr.Sign, txscript's signers,
//     TweakTaprootPrivKey, musig2) multiply in variable time: a function
//     taking or returning one, a variable, a composite literal;
//   - btcutil's WIF, whose key it parses into one;
//   - hdkeychain's ExtendedKey, beyond NewExtendedKey and String (Derive,
//     Neuter, ECPubKey and Address multiply by its key);
//   - ScalarBaseMultNonConst, ScalarMultNonConst, GenerateSharedSecret.
func TestNoVariableTimeSecretOps(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
		Dir:  root,
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range pkgs {
		for _, e := range p.Errors {
			t.Errorf("%s: %v", p.PkgPath, e)
		}
		if p.TypesInfo == nil || !strings.HasPrefix(p.PkgPath, "github.com/moonvault/moonvault") {
			continue
		}
		checked++
		report := func(pos interface{ String() string }, what string) {
			t.Errorf("%s: %s: a variable-time multiplication by a secret; use internal/secp", pos, what)
		}
		for id, obj := range p.TypesInfo.Uses {
			pos := p.Fset.Position(id.Pos())
			if obj.Pkg() != nil && variableTimeFuncs[obj.Name()] && !strings.HasPrefix(obj.Pkg().Path(), "github.com/moonvault/") {
				report(pos, obj.Pkg().Path()+"."+obj.Name())
				continue
			}
			if fn, ok := obj.(*types.Func); ok {
				if recv := fn.Signature().Recv(); recv != nil && strings.Contains(types.TypeString(recv.Type(), nil), extKey) && !allowedExtKey[fn.Name()] {
					report(pos, "hdkeychain.ExtendedKey."+fn.Name())
					continue
				}
				if fn.Pkg() != nil && fn.Pkg().Path() == "github.com/btcsuite/btcd/btcutil/hdkeychain" && !allowedExtKey[fn.Name()] {
					report(pos, "hdkeychain."+fn.Name())
					continue
				}
			}
			if ts := types.TypeString(obj.Type(), nil); holdsSecretKey(ts) {
				report(pos, id.Name+" ("+ts+")")
			}
		}
		for expr, tv := range p.TypesInfo.Types {
			if tv.Type == nil {
				continue
			}
			if ts := types.TypeString(tv.Type, nil); holdsSecretKey(ts) {
				report(p.Fset.Position(expr.Pos()), "an expression of type "+ts)
			}
		}
	}
	if checked < 40 {
		t.Fatalf("only %d packages checked: the load did not find the module", checked)
	}
}

// holdsSecretKey says whether a type's string mentions one of the
// variable-time private key types.
func holdsSecretKey(ts string) bool {
	return strings.Contains(ts, decredKey) || strings.Contains(ts, btcecKey) || strings.Contains(ts, wif)
}
