package signpolicy

import (
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	"github.com/moonvault/moonvault/internal/intent"
)

// guard is the chain and kind a condition requires in a top-level
// conjunct, as most rules start (`intent.chain == "ethereum" && ...`). A
// request of another chain or kind makes that conjunct, and so the whole
// condition, false without error (CEL's && is false when either side is
// false, whatever the other side does), so evaluation skips the program:
// the same decision, without the cost.
type guard struct{ chain, kind string }

// excludes reports whether the condition is false for in.
func (g guard) excludes(in *intent.Intent) bool {
	return (g.chain != "" && in.Chain != g.chain) || (g.kind != "" && in.Kind != g.kind)
}

// guardOf finds the guard of a checked condition.
func guardOf(a *ast.AST) guard {
	var g guard
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		if e.Kind() != ast.CallKind {
			return
		}
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.LogicalAnd:
			for _, arg := range c.Args() {
				walk(arg)
			}
		case operators.Equals:
			if len(c.Args()) != 2 {
				return
			}
			field, value, ok := intentEquals(c.Args()[0], c.Args()[1])
			if !ok {
				field, value, ok = intentEquals(c.Args()[1], c.Args()[0])
			}
			switch {
			case !ok:
			case field == "chain" && g.chain == "":
				g.chain = value
			case field == "kind" && g.kind == "":
				g.kind = value
			}
		}
	}
	walk(a.Expr())
	return g
}

// intentEquals matches `intent.<field>` against a string literal.
func intentEquals(sel, lit ast.Expr) (field, value string, ok bool) {
	if sel.Kind() != ast.SelectKind || lit.Kind() != ast.LiteralKind {
		return "", "", false
	}
	s := sel.AsSelect()
	if s.IsTestOnly() || s.Operand().Kind() != ast.IdentKind || s.Operand().AsIdent() != "intent" {
		return "", "", false
	}
	v, isStr := lit.AsLiteral().(types.String)
	if !isStr {
		return "", "", false
	}
	return s.FieldName(), string(v), true
}
