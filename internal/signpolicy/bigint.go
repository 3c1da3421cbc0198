package signpolicy

import (
	"fmt"
	"math/big"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// Amounts in CEL are exact arbitrary-precision integers of the type
// `bigint`: wei exceed both int64 and uint64, and a policy that compared
// doubles would be wrong by whole tokens. CEL has no integer literal wider
// than 64 bits, so large constants are written with a constructor that
// takes a decimal string (wei("2000000000000000000000"), ether("2000"),
// units("1000", 6)); each string literal is checked when the policy is
// written, so a typo is a 400 naming its position, not a runtime surprise.

// BigIntType is the CEL type of amounts (declared opaque for the checker).
var bigIntType = cel.OpaqueType("bigint")

// bigIntRuntimeType is what values report at run time: same name, with the
// traits the standard operators dispatch on.
var bigIntRuntimeType = types.NewObjectType("bigint",
	traits.AdderType, traits.SubtractorType, traits.MultiplierType, traits.ComparerType)

// maxBigIntBits bounds the result of arithmetic so that an expression cannot
// build a huge number (a memory cost the cost limit does not see).
const maxBigIntBits = 1024

// maxDecimalDigits bounds the text a constructor parses (uint256 has 78
// decimal digits; the slack allows fractional digits and leading zeros).
const maxDecimalDigits = 100

// BigInt is the CEL value of an amount. The wrapped *big.Int is never
// mutated after construction.
type BigInt struct{ v *big.Int }

func newBigInt(v *big.Int) BigInt {
	if v == nil {
		v = new(big.Int)
	}
	return BigInt{v}
}

// Int returns the value; callers must not modify it.
func (b BigInt) Int() *big.Int { return b.v }

// ConvertToNative implements ref.Val.
func (b BigInt) ConvertToNative(t reflect.Type) (any, error) {
	switch t {
	case reflect.TypeFor[*big.Int]():
		return new(big.Int).Set(b.v), nil
	case reflect.TypeFor[string]():
		return b.v.String(), nil
	}
	if t.Kind() == reflect.Interface && reflect.TypeFor[*big.Int]().Implements(t) {
		return new(big.Int).Set(b.v), nil
	}
	return nil, fmt.Errorf("bigint cannot be converted to %v", t)
}

// ConvertToType implements ref.Val: string(x) and int(x).
func (b BigInt) ConvertToType(t ref.Type) ref.Val {
	switch t.TypeName() {
	case types.StringType.TypeName():
		return types.String(b.v.String())
	case types.IntType.TypeName():
		if !b.v.IsInt64() {
			return types.NewErr("int overflow: %s does not fit in int", b.v)
		}
		return types.Int(b.v.Int64())
	case types.UintType.TypeName():
		if !b.v.IsUint64() {
			return types.NewErr("uint overflow: %s does not fit in uint", b.v)
		}
		return types.Uint(b.v.Uint64())
	case bigIntRuntimeType.TypeName():
		return b
	case types.TypeType.TypeName():
		return bigIntRuntimeType
	}
	return types.NewErr("type conversion error from bigint to '%s'", t.TypeName())
}

// Equal implements ref.Val; it is exact against int and uint too.
func (b BigInt) Equal(other ref.Val) ref.Val {
	o, ok := toBig(other)
	if !ok {
		return types.False
	}
	return types.Bool(b.v.Cmp(o) == 0)
}

// Type implements ref.Val.
func (b BigInt) Type() ref.Type { return bigIntRuntimeType }

// Value implements ref.Val.
func (b BigInt) Value() any { return b.v }

// Compare implements traits.Comparer.
func (b BigInt) Compare(other ref.Val) ref.Val {
	o, ok := toBig(other)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	return types.Int(b.v.Cmp(o))
}

// Add implements traits.Adder.
func (b BigInt) Add(other ref.Val) ref.Val {
	return b.arith(other, (*big.Int).Add)
}

// Subtract implements traits.Subtractor.
func (b BigInt) Subtract(other ref.Val) ref.Val {
	return b.arith(other, (*big.Int).Sub)
}

// Multiply implements traits.Multiplier.
func (b BigInt) Multiply(other ref.Val) ref.Val {
	return b.arith(other, (*big.Int).Mul)
}

func (b BigInt) arith(other ref.Val, op func(z, x, y *big.Int) *big.Int) ref.Val {
	o, ok := toBig(other)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	if b.v.BitLen()+o.BitLen() > 2*maxBigIntBits {
		return types.NewErr("bigint overflow: result exceeds %d bits", maxBigIntBits)
	}
	z := op(new(big.Int), b.v, o)
	if z.BitLen() > maxBigIntBits {
		return types.NewErr("bigint overflow: result exceeds %d bits", maxBigIntBits)
	}
	return BigInt{z}
}

func toBig(v ref.Val) (*big.Int, bool) {
	switch o := v.(type) {
	case BigInt:
		return o.v, true
	case types.Int:
		return big.NewInt(int64(o)), true
	case types.Uint:
		return new(big.Int).SetUint64(uint64(o)), true
	}
	return nil, false
}

// unitFuncs are the constructors: name -> decimal places of the unit.
// Each takes an int, or a string with at most that many fractional digits.
var unitFuncs = []struct {
	name     string
	decimals int
	doc      string
}{
	{"bigint", 0, "an integer in base units: bigint(\"2000000000000000000000\"), bigint(5)"},
	{"wei", 0, "wei (Ethereum base unit): wei(\"2100000000000000000\")"},
	{"gwei", 9, "gwei = 10^9 wei: gwei(30)"},
	{"ether", 18, "ether = 10^18 wei: ether(\"2.5\"), ether(10)"},
	{"sats", 0, "satoshis (Bitcoin base unit): sats(150000)"},
	{"btc", 8, "bitcoin = 10^8 satoshis: btc(\"0.5\")"},
	{"lamports", 0, "lamports (Solana base unit): lamports(5000)"},
	{"sol", 9, "SOL = 10^9 lamports: sol(\"1.5\")"},
}

// maxUint256 is 2^256-1, the "unlimited" ERC-20 allowance.
var maxUint256 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// parseUnits parses a non-negative decimal s ("1", "2.5") scaled by
// 10^decimals, exactly; a value finer than the base unit is refused.
func parseUnits(s string, decimals int) (*big.Int, error) {
	if s == "" {
		return nil, fmt.Errorf("empty amount")
	}
	if len(s) > maxDecimalDigits {
		return nil, fmt.Errorf("amount %q is longer than %d characters", truncate(s, 24), maxDecimalDigits)
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") || !isDigits(whole) || (dot && !isDigits(frac)) {
		return nil, fmt.Errorf("amount %q is not a decimal number (digits, optionally one '.')", s)
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > decimals {
		return nil, fmt.Errorf("amount %q has more than %d decimal places", s, decimals)
	}
	v, ok := new(big.Int).SetString(whole+frac+strings.Repeat("0", decimals-len(frac)), 10)
	if !ok {
		return nil, fmt.Errorf("amount %q is not a decimal number", s)
	}
	return v, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func pow10(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// bigIntFunctions declares the constructors, units(), the conversions and
// the operator overloads for bigint.
func bigIntFunctions() []cel.EnvOption {
	opts := []cel.EnvOption{cel.Constant("max_uint256", bigIntType, BigInt{maxUint256})}
	for _, u := range unitFuncs {
		scale := pow10(u.decimals)
		decimals := u.decimals
		opts = append(opts, cel.Function(u.name,
			cel.FunctionDocs(u.doc),
			cel.Overload(u.name+"_string", []*cel.Type{cel.StringType}, bigIntType,
				cel.UnaryBinding(func(arg ref.Val) ref.Val {
					v, err := parseUnits(string(arg.(types.String)), decimals)
					if err != nil {
						return types.WrapErr(err)
					}
					return BigInt{v}
				})),
			cel.Overload(u.name+"_int", []*cel.Type{cel.IntType}, bigIntType,
				cel.UnaryBinding(func(arg ref.Val) ref.Val {
					i := int64(arg.(types.Int))
					if i < 0 {
						return types.NewErr("%s: amount must not be negative", u.name)
					}
					return BigInt{new(big.Int).Mul(big.NewInt(i), scale)}
				})),
			cel.Overload(u.name+"_uint", []*cel.Type{cel.UintType}, bigIntType,
				cel.UnaryBinding(func(arg ref.Val) ref.Val {
					return BigInt{new(big.Int).Mul(new(big.Int).SetUint64(uint64(arg.(types.Uint))), scale)}
				})),
		))
	}
	opts = append(opts,
		cel.Function("units",
			cel.FunctionDocs(`a decimal amount of a token with the given decimals: units("1000.5", 6) = 1000500000`),
			cel.Overload("units_string_int", []*cel.Type{cel.StringType, cel.IntType}, bigIntType,
				cel.BinaryBinding(func(s, d ref.Val) ref.Val {
					dec := int64(d.(types.Int))
					if dec < 0 || dec > 77 {
						return types.NewErr("units: decimals must be 0..77")
					}
					v, err := parseUnits(string(s.(types.String)), int(dec))
					if err != nil {
						return types.WrapErr(err)
					}
					return BigInt{v}
				}))),
		cel.Function(overloads.TypeConvertString,
			cel.Overload("string_bigint", []*cel.Type{bigIntType}, cel.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return v.ConvertToType(types.StringType) }))),
		cel.Function(overloads.TypeConvertInt,
			cel.Overload("int_bigint", []*cel.Type{bigIntType}, cel.IntType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return v.ConvertToType(types.IntType) }))),
	)
	// Operators: the standard library dispatches these on the left operand's
	// traits, so only declarations are needed, with bigint on the left.
	for _, op := range []struct{ fn, id string }{
		{operators.Less, "less"}, {operators.LessEquals, "less_equals"},
		{operators.Greater, "greater"}, {operators.GreaterEquals, "greater_equals"},
	} {
		opts = append(opts, cel.Function(op.fn,
			cel.Overload(op.id+"_bigint_bigint", []*cel.Type{bigIntType, bigIntType}, cel.BoolType),
			cel.Overload(op.id+"_bigint_int", []*cel.Type{bigIntType, cel.IntType}, cel.BoolType),
			cel.Overload(op.id+"_bigint_uint", []*cel.Type{bigIntType, cel.UintType}, cel.BoolType)))
	}
	for _, op := range []struct{ fn, id string }{
		{operators.Add, "add"}, {operators.Subtract, "subtract"}, {operators.Multiply, "multiply"},
	} {
		opts = append(opts, cel.Function(op.fn,
			cel.Overload(op.id+"_bigint_bigint", []*cel.Type{bigIntType, bigIntType}, bigIntType),
			cel.Overload(op.id+"_bigint_int", []*cel.Type{bigIntType, cel.IntType}, bigIntType)))
	}
	return opts
}

// amountFuncNames are the functions whose string literal argument is
// checked at write time.
func isAmountFunc(name string) bool {
	if name == "units" {
		return true
	}
	for _, u := range unitFuncs {
		if u.name == name {
			return true
		}
	}
	return false
}

func unitDecimals(name string) int {
	for _, u := range unitFuncs {
		if u.name == name {
			return u.decimals
		}
	}
	return 0
}
