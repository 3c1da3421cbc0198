package signpolicy

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
)

// Limits on one condition. CEL is not Turing-complete, but nested
// comprehensions over long list literals are polynomial: the cost limit
// stops any evaluation past MaxCost, and the size limits bound what is
// parsed and checked at write time.
const (
	// MaxConditionLength is the longest condition, in code points.
	MaxConditionLength = 16 << 10
	// MaxCost is the runtime cost limit of one evaluation (cel-go cost
	// units: about one per operation, per list element visited, and per
	// 10 bytes of strings compared).
	MaxCost = 100_000
	// maxNodes bounds the checked AST.
	maxNodes = 4000
	// maxNesting bounds expression nesting depth.
	maxNesting = 32
	// maxComprehensionNesting bounds nested all()/exists()/map()/filter().
	maxComprehensionNesting = 2
)

var errNoNative = errors.New("signpolicy: intent values have no native form")

// ErrCostLimit is the runtime error of a condition that exceeded MaxCost.
var ErrCostLimit = errkind.New(errkind.Invalid, "policy_cost_limit", "condition exceeded the evaluation cost limit")

// compiler owns the CEL environment: built once, shared by every policy.
type compiler struct {
	env    *cel.Env
	schema *schema
}

func newCompiler() (*compiler, error) {
	s, err := newSchema()
	if err != nil {
		return nil, err
	}
	opts := append(s.envOptions(), bigIntFunctions()...)
	opts = append(opts,
		cel.ParserExpressionSizeLimit(MaxConditionLength),
		cel.ExpressionNodeLimit(maxNodes),
		cel.ParserRecursionLimit(maxNesting),
		cel.ExpressionNestingDepthLimit(maxNesting),
		cel.RegexProgramSizeLimit(200),
		cel.ASTValidators(
			cel.ValidateComprehensionNestingLimit(maxComprehensionNesting),
			cel.ValidateRegexLiterals(),
			cel.ValidateTimestampLiterals(),
			cel.ValidateDurationLiterals(),
			cel.ValidateHomogeneousAggregateLiterals(),
			amountLiteralValidator{},
		),
	)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("signpolicy: CEL environment: %w", err)
	}
	return &compiler{env: env, schema: s}, nil
}

// program is a compiled, type-checked condition: prg tracks the runtime
// cost; fast, when not nil, does not, because the condition cannot reach
// MaxCost on a request within fieldBounds (cost.go).
type program struct {
	prg  cel.Program
	fast cel.Program
	// guard skips requests the condition cannot match (prefilter.go).
	guard guard
}

// compile parses and type-checks a condition. Errors are *errkind.Field
// errors on "condition" naming line and column.
func (c *compiler) compile(condition string) (*program, error) {
	if strings.TrimSpace(condition) == "" {
		return nil, errkind.FieldErr("condition", "is required (write true to match every request)")
	}
	checked, iss := c.env.Compile(condition)
	if iss != nil && iss.Err() != nil {
		return nil, errkind.FieldErr("condition", describeIssues(iss))
	}
	if !checked.OutputType().IsExactType(types.BoolType) {
		return nil, errkind.FieldErr("condition", fmt.Sprintf("must be a bool expression, not %s", cel.FormatCELType(checked.OutputType())))
	}
	canonLiterals(checked.NativeRep())
	foldAmounts(checked.NativeRep())
	prg, err := c.env.Program(checked,
		cel.CostLimit(MaxCost),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, errkind.FieldErr("condition", err.Error())
	}
	p := &program{prg: prg, guard: guardOf(checked.NativeRep())}
	if c.bounded(checked) { // cost.go
		if p.fast, err = c.env.Program(checked, cel.EvalOptions(cel.OptOptimize)); err != nil {
			return nil, errkind.FieldErr("condition", err.Error())
		}
	}
	return p, nil
}

// describeIssues renders CEL errors as "line L, column C: message", with a
// hint for the mistakes a policy author is likely to make.
func describeIssues(iss *cel.Issues) string {
	var parts []string
	for i, e := range iss.Errors() {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(iss.Errors())-3))
			break
		}
		msg := e.Message
		switch {
		case strings.Contains(msg, "invalid int literal"), strings.Contains(msg, "invalid uint literal"):
			msg += ` (integers past 64 bits are written as a string: wei("2000000000000000000000"), ether("2000"), units("1000", 6))`
		case strings.Contains(msg, "no matching overload") && strings.Contains(msg, "bigint"):
			msg += " (compare a bigint with <, <=, >, >= and the bigint on the left; for == write both sides as bigint: intent.value == wei(0))"
		}
		loc := e.Location
		if loc != nil && loc.Line() > 0 {
			parts = append(parts, fmt.Sprintf("line %d, column %d: %s", loc.Line(), loc.Column()+1, msg))
		} else {
			parts = append(parts, msg)
		}
	}
	return strings.Join(parts, "; ")
}

// canonLiterals lowercases 0x-hex string literals and all-uppercase bech32
// literals in place, to match the canonical case of the intent view.
func canonLiterals(a *ast.AST) {
	fac := ast.NewExprFactory()
	for _, e := range ast.MatchDescendants(ast.NavigateAST(a), ast.KindMatcher(ast.LiteralKind)) {
		s, ok := e.AsLiteral().(types.String)
		if !ok {
			continue
		}
		c := canonHex(string(s))
		if isBech32(c) {
			c = strings.ToLower(c)
		}
		if c != string(s) {
			e.SetKindCase(fac.NewLiteral(e.ID(), types.String(c)))
		}
	}
}

// foldAmounts replaces constructor calls on literals (ether(10),
// wei("2000000000000000000000")) by their value, so that evaluation does
// not parse the same constant again for every request. The node keeps its
// id, and so its checked type (bigint).
func foldAmounts(a *ast.AST) {
	fac := ast.NewExprFactory()
	for _, e := range ast.MatchDescendants(ast.NavigateAST(a), ast.KindMatcher(ast.CallKind)) {
		call := e.AsCall()
		name := call.FunctionName()
		if call.IsMemberFunction() || !isAmountFunc(name) {
			continue
		}
		args := make([]ref.Val, len(call.Args()))
		for i, arg := range call.Args() {
			if arg.Kind() != ast.LiteralKind {
				args = nil
				break
			}
			args[i] = arg.AsLiteral()
		}
		if v, ok := constAmount(name, args); ok {
			e.SetKindCase(fac.NewLiteral(e.ID(), v))
		}
	}
}

// constAmount evaluates a constructor on constant arguments.
func constAmount(name string, args []ref.Val) (BigInt, bool) {
	decimals := unitDecimals(name)
	switch {
	case name == "units" && len(args) == 2:
		d, ok := args[1].(types.Int)
		if !ok || d < 0 || d > 77 {
			return BigInt{}, false
		}
		decimals = int(d)
	case len(args) != 1:
		return BigInt{}, false
	}
	switch x := args[0].(type) {
	case types.String:
		v, err := parseUnits(string(x), decimals)
		return BigInt{v}, err == nil
	case types.Int:
		if x < 0 {
			return BigInt{}, false
		}
		return BigInt{new(big.Int).Mul(big.NewInt(int64(x)), pow10(decimals))}, true
	case types.Uint:
		return BigInt{new(big.Int).Mul(new(big.Int).SetUint64(uint64(x)), pow10(decimals))}, true
	}
	return BigInt{}, false
}

// amountLiteralValidator checks, at write time, that a string literal given
// to bigint(), wei(), ether(), units() ... parses.
type amountLiteralValidator struct{}

func (amountLiteralValidator) Name() string { return "moonvault.amount_literals" }

func (amountLiteralValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	for _, e := range ast.MatchDescendants(ast.NavigateAST(a), ast.KindMatcher(ast.CallKind)) {
		call := e.AsCall()
		name := call.FunctionName()
		if call.IsMemberFunction() || !isAmountFunc(name) || len(call.Args()) == 0 {
			continue
		}
		arg := call.Args()[0]
		if arg.Kind() != ast.LiteralKind {
			continue
		}
		s, ok := arg.AsLiteral().(types.String)
		if !ok {
			continue
		}
		decimals := unitDecimals(name)
		if name == "units" {
			d := call.Args()[1]
			if d.Kind() != ast.LiteralKind {
				continue
			}
			n, ok := d.AsLiteral().(types.Int)
			if !ok || n < 0 || n > 77 {
				iss.ReportErrorAtID(d.ID(), "units: decimals must be an integer 0..77")
				continue
			}
			decimals = int(n)
		}
		if _, err := parseUnits(string(s), decimals); err != nil {
			iss.ReportErrorAtID(arg.ID(), "%s: %v", name, err)
		}
	}
}

// activation binds `intent` and `now` without a map.
type activation struct {
	intent ref.Val
	now    ref.Val
	// bounded: the request's fields are within fieldBounds, so programs
	// proven cheap may run untracked.
	bounded bool
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "intent":
		return a.intent, true
	case "now":
		return a.now, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// newActivation builds the variables of one request.
func (c *compiler) newActivation(in *intent.Intent, now time.Time) *activation {
	return &activation{
		intent:  object{c.schema.intent, c.schema.view(in)},
		now:     types.Timestamp{Time: now.UTC()},
		bounded: withinBounds(in),
	}
}

// eval runs a program; a non-bool result or a runtime error is an error.
func (p *program) eval(act *activation) (bool, error) {
	prg := p.prg
	if p.fast != nil && act.bounded {
		prg = p.fast
	}
	out, _, err := prg.Eval(act)
	if err != nil {
		if strings.Contains(err.Error(), "cost limit exceeded") {
			return false, fmt.Errorf("%w: %w", ErrCostLimit, err)
		}
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition returned %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
