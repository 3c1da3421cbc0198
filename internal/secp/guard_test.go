package secp

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// variableTime are the calls of btcec (decred's secp256k1) and of the
// btcd packages built on it that multiply the base point by a secret
// scalar in variable time, by the import path of their package. A method
// (package "") is flagged in any file that imports one of those packages.
var variableTime = map[string][]string{
	"github.com/btcsuite/btcd/btcec/v2":           {"PrivKeyFromBytes", "PrivKeyFromScalar", "NewPrivateKey", "ScalarBaseMultNonConst"},
	"github.com/btcsuite/btcd/btcec/v2/schnorr":   {"Sign"},
	"github.com/btcsuite/btcd/btcec/v2/ecdsa":     {"Sign", "SignCompact"},
	"github.com/decred/dcrd/dcrec/secp256k1/v4":   {"PrivKeyFromBytes", "NewPrivateKey", "ScalarBaseMultNonConst"},
	"github.com/btcsuite/btcd/txscript":           {"TweakTaprootPrivKey"},
	"github.com/btcsuite/btcd/btcutil/hdkeychain": {"NewMaster"},
	"": {"PubKey", "ECPubKey", "ECPrivKey", "Neuter", "Derive", "DeriveNonStandard"},
}

// TestNoVariableTimeSecretOps keeps every secret-scalar multiplication in
// this package: the product's code (tests aside, which use btcec as an
// oracle) calls none of the variable-time operations above.
func TestNoVariableTimeSecretOps(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		names := map[string]string{} // local name -> import path
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if _, ok := variableTime[p]; !ok {
				continue
			}
			name := p[strings.LastIndex(p, "/")+1:]
			if p == "github.com/btcsuite/btcd/btcec/v2" || p == "github.com/decred/dcrd/dcrec/secp256k1/v4" {
				name = map[bool]string{true: "btcec", false: "secp256k1"}[strings.Contains(p, "btcec")]
			}
			if im.Name != nil {
				name = im.Name.Name
			}
			names[name] = p
		}
		if len(names) == 0 {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg := ""
			if id, ok := sel.X.(*ast.Ident); ok {
				pkg = names[id.Name]
			}
			for _, fn := range variableTime[pkg] {
				if sel.Sel.Name != fn {
					continue
				}
				what := pkg + "." + fn
				if pkg == "" {
					what = "method " + fn + " (of a btcec or hdkeychain key)"
				}
				t.Errorf("%s: %s multiplies by a secret in variable time; use internal/secp", fset.Position(call.Pos()), what)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d files checked: the walk did not find the module", checked)
	}
}
