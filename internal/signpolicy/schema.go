package signpolicy

import (
	"math/big"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/moonvault/moonvault/internal/intent"
)

// The CEL view of an intent. Conditions read `intent` (moonvault.Intent)
// and `now` (timestamp). Field names are the snake_case names of
// shared/DESIGN.md ("Policies"). Absent sub-objects read as their zero value
// (proto3 style) and has() tells presence, so `intent.token.to in [...]`
// never fails on a request without a token.
//
// A request the chain could not fully decode (intent.Decoded false) has
// value, token, tokens and outputs unknown in the view: CEL's unknown
// value, which the operators propagate (`false && unknown` is false, `true
// || unknown` true, anything else that reads it unknown). A condition whose
// result is unknown is decided by the engine (engine.go, "undecoded"), so
// a policy cannot be passed by what the vault could not see.
//
// Every 0x-hex string (addresses, selector, salt) is lowercase in the view,
// and so is every 0x-hex string literal in a condition (rewritten at compile
// time): an EIP-55 checksummed address in a rule and a lowercase one in a
// request must not differ, or a deny list could be evaded by changing case.
// Bitcoin bech32 addresses are lowercase likewise (BIP-173 makes case
// meaningless); base58 addresses are case-sensitive and kept as they are.

const (
	intentTypeName    = "moonvault.Intent"
	tokenTypeName     = "moonvault.Token"
	typedDataTypeName = "moonvault.TypedData"
	domainTypeName    = "moonvault.Domain"
	outputTypeName    = "moonvault.Output"
)

// objType is one declared struct type: its CEL type and fields.
type objType struct {
	t      *types.Type
	fields map[string]*field
	names  []string
}

type field struct {
	t     *types.Type
	get   func(v any) ref.Val
	isSet func(v any) bool
}

func newObjType(name string) *objType {
	return &objType{t: types.NewObjectType(name), fields: map[string]*field{}}
}

func (o *objType) add(name string, t *types.Type, get func(v any) ref.Val, isSet func(v any) bool) {
	if isSet == nil {
		isSet = func(any) bool { return true }
	}
	o.fields[name] = &field{t: t, get: get, isSet: isSet}
	o.names = append(o.names, name)
}

// object is a CEL value of a declared struct type over a view pointer.
type object struct {
	typ *objType
	v   any
}

func (o object) ConvertToNative(t reflect.Type) (any, error) {
	return nil, errNoNative
}

func (o object) ConvertToType(t ref.Type) ref.Val {
	if t.TypeName() == types.TypeType.TypeName() {
		return o.typ.t
	}
	if t.TypeName() == o.typ.t.TypeName() {
		return o
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.typ.t.TypeName(), t.TypeName())
}

// Equal compares field by field.
func (o object) Equal(other ref.Val) ref.Val {
	p, ok := other.(object)
	if !ok || p.typ != o.typ {
		return types.False
	}
	for _, n := range o.typ.names {
		f := o.typ.fields[n]
		if f.isSet(o.v) != f.isSet(p.v) || f.get(o.v).Equal(f.get(p.v)) != types.True {
			return types.False
		}
	}
	return types.True
}

func (o object) Type() ref.Type { return o.typ.t }
func (o object) Value() any     { return o.v }

// Get implements traits.Indexer, for dynamic access (dyn(intent).value).
func (o object) Get(index ref.Val) ref.Val {
	f := o.field(index)
	if f == nil {
		return types.NewErr("no such field '%v'", index)
	}
	return f.get(o.v)
}

// IsSet implements traits.FieldTester: has(intent.token).
func (o object) IsSet(index ref.Val) ref.Val {
	f := o.field(index)
	if f == nil {
		return types.NewErr("no such field '%v'", index)
	}
	return types.Bool(f.isSet(o.v))
}

func (o object) field(index ref.Val) *field {
	s, ok := index.(types.String)
	if !ok {
		return nil
	}
	return o.typ.fields[string(s)]
}

var _ traits.Indexer = object{}
var _ traits.FieldTester = object{}

// The view structs hold CEL values built once per request, shared by every
// policy evaluated for it.
type intentView struct {
	chain, network, kind, account, owner, principal, to, selector types.String
	amr, delegates, outputs, tokens, programs                     ref.Val
	chainID                                                       types.Int
	hasChainID                                                    bool
	decoded                                                       types.Bool
	value, maxFee                                                 BigInt
	token                                                         *tokenView
	typedData                                                     *typedDataView
	// unknown, when not nil, is what value, token, tokens and outputs read
	// as: the request is not fully decoded.
	unknown ref.Val
	// valueKnown: value (and max_fee) are exact although the request is not
	// fully decoded (intent.ValueKnown); only what else it moves is unknown.
	valueKnown bool
}

type tokenView struct {
	contract, method, from, to types.String
	amount, tokenID            BigInt
	hasTokenID                 bool
	unlimited                  types.Bool
}

type typedDataView struct {
	primaryType types.String
	domain      domainView
}

type domainView struct {
	name, version, verifyingContract, salt types.String
	chainID                                types.Int
	hasChainID                             bool
}

type outputView struct {
	address, script types.String
	value           BigInt
}

// schema holds the declared types; one per Compiler.
type schema struct {
	intent, token, typedData, domain, output *objType
	zeroToken                                *tokenView
	zeroTypedData                            *typedDataView
	// emptyList is shared by every empty list of a view (immutable).
	emptyList ref.Val
	// unknown is the value of what an undecoded request moves.
	unknown ref.Val
	byName  map[string]*objType
	*types.Registry
}

func newSchema() (*schema, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	s := &schema{
		intent: newObjType(intentTypeName), token: newObjType(tokenTypeName),
		typedData: newObjType(typedDataTypeName), domain: newObjType(domainTypeName),
		output:        newObjType(outputTypeName),
		zeroToken:     &tokenView{amount: newBigInt(nil), tokenID: newBigInt(nil)},
		zeroTypedData: &typedDataView{},
		Registry:      reg,
	}
	s.emptyList = types.NewRefValList(s, nil)
	s.unknown = types.NewUnknown(0, nil)
	str := types.StringType
	strs := types.NewListType(types.StringType)
	in := func(v any) *intentView { return v.(*intentView) }
	s.intent.add("chain", str, func(v any) ref.Val { return in(v).chain }, nil)
	s.intent.add("network", str, func(v any) ref.Val { return in(v).network }, nil)
	s.intent.add("kind", str, func(v any) ref.Val { return in(v).kind }, nil)
	s.intent.add("account", str, func(v any) ref.Val { return in(v).account }, nil)
	s.intent.add("owner", str, func(v any) ref.Val { return in(v).owner }, nil)
	s.intent.add("principal", str, func(v any) ref.Val { return in(v).principal }, nil)
	s.intent.add("amr", strs, func(v any) ref.Val { return in(v).amr }, nil)
	s.intent.add("chain_id", types.IntType, func(v any) ref.Val { return in(v).chainID },
		func(v any) bool { return in(v).hasChainID })
	s.intent.add("to", str, func(v any) ref.Val { return in(v).to },
		func(v any) bool { return in(v).to != "" })
	// Fields that describe what moves read as unknown on an undecoded
	// request.
	unknownOr := func(v any, known ref.Val) ref.Val {
		if u := in(v).unknown; u != nil {
			return u
		}
		return known
	}
	s.intent.add("value", bigIntType, func(v any) ref.Val {
		if in(v).valueKnown {
			return in(v).value
		}
		return unknownOr(v, in(v).value)
	}, nil)
	s.intent.add("max_fee", bigIntType, func(v any) ref.Val { return in(v).maxFee }, nil)
	s.intent.add("decoded", types.BoolType, func(v any) ref.Val { return in(v).decoded }, nil)
	s.intent.add("programs", strs, func(v any) ref.Val { return in(v).programs }, nil)
	s.intent.add("selector", str, func(v any) ref.Val { return in(v).selector },
		func(v any) bool { return in(v).selector != "" })
	s.intent.add("token", s.token.t, func(v any) ref.Val {
		if u := in(v).unknown; u != nil {
			return u
		}
		if t := in(v).token; t != nil {
			return object{s.token, t}
		}
		return object{s.token, s.zeroToken}
	}, func(v any) bool { return in(v).token != nil })
	// tokens lists every token movement: a condition that reads only
	// intent.token (the first) could be passed by a harmless first transfer
	// followed by the one it means to stop.
	s.intent.add("tokens", types.NewListType(s.token.t), func(v any) ref.Val { return unknownOr(v, in(v).tokens) }, nil)
	s.intent.add("typed_data", s.typedData.t, func(v any) ref.Val {
		if t := in(v).typedData; t != nil {
			return object{s.typedData, t}
		}
		return object{s.typedData, s.zeroTypedData}
	}, func(v any) bool { return in(v).typedData != nil })
	s.intent.add("delegates", strs, func(v any) ref.Val { return in(v).delegates }, nil)
	s.intent.add("outputs", types.NewListType(s.output.t), func(v any) ref.Val { return unknownOr(v, in(v).outputs) }, nil)

	tok := func(v any) *tokenView { return v.(*tokenView) }
	s.token.add("contract", str, func(v any) ref.Val { return tok(v).contract }, nil)
	s.token.add("method", str, func(v any) ref.Val { return tok(v).method }, nil)
	s.token.add("from", str, func(v any) ref.Val { return tok(v).from }, nil)
	s.token.add("to", str, func(v any) ref.Val { return tok(v).to }, nil)
	s.token.add("amount", bigIntType, func(v any) ref.Val { return tok(v).amount }, nil)
	s.token.add("token_id", bigIntType, func(v any) ref.Val { return tok(v).tokenID },
		func(v any) bool { return tok(v).hasTokenID })
	s.token.add("unlimited", types.BoolType, func(v any) ref.Val { return tok(v).unlimited }, nil)

	td := func(v any) *typedDataView { return v.(*typedDataView) }
	s.typedData.add("primary_type", str, func(v any) ref.Val { return td(v).primaryType }, nil)
	s.typedData.add("domain", s.domain.t, func(v any) ref.Val { return object{s.domain, &td(v).domain} }, nil)

	dom := func(v any) *domainView { return v.(*domainView) }
	s.domain.add("name", str, func(v any) ref.Val { return dom(v).name }, nil)
	s.domain.add("version", str, func(v any) ref.Val { return dom(v).version }, nil)
	s.domain.add("chain_id", types.IntType, func(v any) ref.Val { return dom(v).chainID },
		func(v any) bool { return dom(v).hasChainID })
	s.domain.add("verifying_contract", str, func(v any) ref.Val { return dom(v).verifyingContract },
		func(v any) bool { return dom(v).verifyingContract != "" })
	s.domain.add("salt", str, func(v any) ref.Val { return dom(v).salt },
		func(v any) bool { return dom(v).salt != "" })

	out := func(v any) *outputView { return v.(*outputView) }
	s.output.add("address", str, func(v any) ref.Val { return out(v).address }, nil)
	s.output.add("script", str, func(v any) ref.Val { return out(v).script }, nil)
	s.output.add("value", bigIntType, func(v any) ref.Val { return out(v).value }, nil)

	s.byName = map[string]*objType{}
	for _, o := range []*objType{s.intent, s.token, s.typedData, s.domain, s.output} {
		s.byName[o.t.TypeName()] = o
	}
	return s, nil
}

// FindStructType implements types.Provider.
func (s *schema) FindStructType(name string) (*types.Type, bool) {
	if o, ok := s.byName[name]; ok {
		return types.NewTypeTypeWithParam(o.t), true
	}
	return s.Registry.FindStructType(name)
}

// FindStructFieldNames implements types.Provider.
func (s *schema) FindStructFieldNames(name string) ([]string, bool) {
	if o, ok := s.byName[name]; ok {
		return append([]string(nil), o.names...), true
	}
	return s.Registry.FindStructFieldNames(name)
}

// FindStructFieldType implements types.Provider. GetFrom lets the
// interpreter read fields straight from the view.
func (s *schema) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	o, ok := s.byName[name]
	if !ok {
		return s.Registry.FindStructFieldType(name, fieldName)
	}
	f, ok := o.fields[fieldName]
	if !ok {
		return nil, false
	}
	// A field of an unknown object is unknown, and present (as cel-go's
	// own qualifiers treat unknowns).
	return &types.FieldType{
		Type: f.t,
		IsSet: func(v any) bool {
			if _, ok := v.(*types.Unknown); ok {
				return true
			}
			return f.isSet(v)
		},
		GetFrom: func(v any) (any, error) {
			if u, ok := v.(*types.Unknown); ok {
				return u, nil
			}
			return f.get(v), nil
		},
	}, true
}

// NewValue implements types.Provider: conditions cannot build intents.
func (s *schema) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := s.byName[name]; ok {
		return types.NewErr("%s values cannot be constructed in a condition", name)
	}
	return s.Registry.NewValue(name, fields)
}

// NativeToValue implements types.Adapter.
func (s *schema) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case *big.Int:
		return newBigInt(x)
	case *intentView:
		return object{s.intent, x}
	}
	return s.Registry.NativeToValue(v)
}

func (s *schema) envOptions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.CustomTypeProvider(s),
		cel.CustomTypeAdapter(s),
		cel.Variable("intent", s.intent.t),
		cel.Variable("now", cel.TimestampType),
	}
}

// view builds the CEL view of in. It does not modify in.
func (s *schema) view(in *intent.Intent) *intentView {
	btc := in.Chain == intent.ChainBitcoin
	v := &intentView{
		chain:     types.String(in.Chain),
		network:   types.String(in.Network),
		kind:      types.String(in.Kind),
		account:   types.String(in.Account),
		owner:     types.String(in.Owner),
		principal: types.String(in.Principal),
		to:        types.String(canonAddress(in.To, btc)),
		selector:  types.String(canonHex(in.Selector)),
		value:     newBigInt(in.Value),
		maxFee:    newBigInt(in.MaxFee),
		decoded:   types.Bool(in.Decoded),
		amr:       s.strings(in.AMR),
		delegates: s.strings(canonAll(in.Delegates)),
		programs:  s.strings(canonAll(in.Programs)),
	}
	if !in.Decoded {
		v.unknown = s.unknown
		v.valueKnown = in.ValueKnown
	}
	v.chainID, v.hasChainID = chainIDVal(in.ChainID)
	tokenOf := func(t *intent.Token) *tokenView {
		return &tokenView{
			contract:   types.String(canonAddress(t.Contract, btc)),
			method:     types.String(t.Method),
			from:       types.String(canonAddress(t.From, btc)),
			to:         types.String(canonAddress(t.To, btc)),
			amount:     newBigInt(t.Amount),
			tokenID:    newBigInt(t.TokenID),
			hasTokenID: t.TokenID != nil,
			unlimited:  types.Bool(t.Unlimited),
		}
	}
	// token is the first movement and tokens all of them, whichever of the
	// two fields the chain package filled.
	var toks []ref.Val
	for i := range in.Tokens {
		tv := tokenOf(&in.Tokens[i])
		if i == 0 {
			v.token = tv
		}
		toks = append(toks, object{s.token, tv})
	}
	if t := in.Token; t != nil {
		v.token = tokenOf(t)
		if len(in.Tokens) == 0 {
			toks = append(toks, object{s.token, v.token})
		}
	}
	v.tokens = s.list(toks)
	if td := in.TypedData; td != nil {
		d := td.Domain
		v.typedData = &typedDataView{
			primaryType: types.String(td.PrimaryType),
			domain: domainView{
				name:              types.String(canonHex(d.Name)),
				version:           types.String(canonHex(d.Version)),
				verifyingContract: types.String(canonHex(d.VerifyingContract)),
				salt:              types.String(canonHex(d.Salt)),
			},
		}
		v.typedData.domain.chainID, v.typedData.domain.hasChainID = chainIDVal(d.ChainID)
	}
	if len(in.Outputs) == 0 {
		v.outputs = s.emptyList
		return v
	}
	outs := make([]ref.Val, len(in.Outputs))
	for i, o := range in.Outputs {
		outs[i] = object{s.output, &outputView{
			address: types.String(canonAddress(o.Address, btc)),
			script:  types.String(strings.ToLower(o.Script)),
			value:   newBigInt(o.Value),
		}}
	}
	v.outputs = types.NewRefValList(s, outs)
	return v
}

func (s *schema) strings(ss []string) ref.Val {
	if len(ss) == 0 {
		return s.emptyList
	}
	return types.NewStringList(s, ss)
}

func (s *schema) list(vs []ref.Val) ref.Val {
	if len(vs) == 0 {
		return s.emptyList
	}
	return types.NewRefValList(s, vs)
}

// chainIDVal maps a chain id to CEL int: 0 and unset when absent, -1 when it
// does not fit (no real chain has one; a rule `chain_id != 1` still holds).
func chainIDVal(id *big.Int) (types.Int, bool) {
	switch {
	case id == nil:
		return 0, false
	case !id.IsInt64():
		return -1, true
	}
	return types.Int(id.Int64()), true
}

func canonAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = canonHex(s)
	}
	return out
}

// canonHex lowercases a 0x-hex string; anything else is returned as is.
func canonHex(s string) string {
	if len(s) < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return s
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return s
		}
	}
	return strings.ToLower(s)
}

// canonAddress canonicalises an address of the intent's chain: 0x-hex is
// lowercased; on Bitcoin, so is a bech32 address.
func canonAddress(s string, bitcoin bool) string {
	if bitcoin && isBech32(s) {
		return strings.ToLower(s)
	}
	return canonHex(s)
}

const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

// isBech32 reports whether s looks like a Bitcoin segwit address (hrp bc,
// tb or bcrt) in one case. It only decides canonical case, not validity.
func isBech32(s string) bool {
	l := strings.ToLower(s)
	if s != l && s != strings.ToUpper(s) {
		return false
	}
	var rest string
	for _, hrp := range []string{"bcrt1", "bc1", "tb1"} {
		if strings.HasPrefix(l, hrp) {
			rest = l[len(hrp):]
			break
		}
	}
	if len(rest) < 6 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(bech32Charset, rest[i]) < 0 {
			return false
		}
	}
	return true
}
