package signpolicy

import (
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"

	"github.com/moonvault/moonvault/internal/intent"
)

// Runtime cost tracking makes CEL evaluation about ten times slower, and
// most conditions cannot come near MaxCost anyway: they compare a few
// fields with constants. So a condition whose worst case, estimated when it
// is compiled (checker.Cost: an upper bound of the runtime cost under the
// same model), stays within MaxCost gets a second program without the
// tracker, used for every request whose fields are within the sizes the
// estimate assumed. A condition that loops over a list of the request
// (outputs, tokens, delegates) or reads a field of unbounded size is always
// tracked, and a request with an oversized field is evaluated by the
// tracked program: the cost limit is never weakened.

// fieldBounds are the sizes (code points; items for lists) the estimate
// assumes for intent fields, by their CEL path ("@items" is a list's
// element). Most hold by construction (addresses, selectors, names the
// vault checked); withinBounds checks every one of them on each request,
// so a bound only decides which program runs, never whether the limit
// holds. Lists are bounded at 64 items: a request with more outputs,
// tokens or delegates is evaluated by the tracked program.
const (
	maxShort = 64
	maxText  = 256
	maxItems = 64
)

var fieldBounds = map[string]int{
	"intent.chain":      maxShort,
	"intent.network":    maxShort,
	"intent.kind":       maxShort,
	"intent.account":    maxText,
	"intent.owner":      maxText,
	"intent.principal":  maxText,
	"intent.amr":        8,
	"intent.amr.@items": maxShort,
	"intent.to":         maxText,
	"intent.selector":   maxShort,

	"intent.token.contract": maxText,
	"intent.token.method":   maxShort,
	"intent.token.from":     maxText,
	"intent.token.to":       maxText,

	"intent.tokens":                 maxItems,
	"intent.tokens.@items.contract": maxText,
	"intent.tokens.@items.method":   maxShort,
	"intent.tokens.@items.from":     maxText,
	"intent.tokens.@items.to":       maxText,

	"intent.typed_data.primary_type":              maxText,
	"intent.typed_data.domain.name":               maxText,
	"intent.typed_data.domain.version":            maxText,
	"intent.typed_data.domain.verifying_contract": maxText,
	"intent.typed_data.domain.salt":               maxText,

	"intent.delegates":        maxItems,
	"intent.delegates.@items": maxText,

	"intent.outputs":                maxItems,
	"intent.outputs.@items.address": maxText,
	"intent.outputs.@items.script":  1024,
}

// sizeEstimator gives the checker fieldBounds.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if t := n.Type(); t != nil && t.IsExactType(bigIntType) {
		// A scalar: the runtime prices comparing one as 1, as for an int.
		return &checker.SizeEstimate{Min: 1, Max: 1}
	}
	if b, ok := fieldBounds[strings.Join(n.Path(), ".")]; ok {
		return &checker.SizeEstimate{Min: 0, Max: uint64(b)} // #nosec G115 -- b is one of the small positive constants above
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// bounded reports whether the estimated worst-case cost of a checked
// condition is within MaxCost.
func (c *compiler) bounded(a *cel.Ast) bool {
	est, err := c.env.EstimateCost(a, sizeEstimator{})
	return err == nil && est.Max <= MaxCost
}

// withinBounds reports whether in's fields are within fieldBounds.
func withinBounds(in *intent.Intent) bool {
	str := func(s string, path string) bool {
		b := fieldBounds[path]
		return len(s) <= b || utf8.RuneCountInString(s) <= b
	}
	items := func(n int, path string) bool { return n <= fieldBounds[path] }
	token := func(t *intent.Token, path string) bool {
		return str(t.Contract, path+".contract") && str(t.Method, path+".method") &&
			str(t.From, path+".from") && str(t.To, path+".to")
	}
	ok := str(in.Chain, "intent.chain") && str(in.Network, "intent.network") && str(in.Kind, "intent.kind") &&
		str(in.Account, "intent.account") && str(in.Owner, "intent.owner") && str(in.Principal, "intent.principal") &&
		str(in.To, "intent.to") && str(in.Selector, "intent.selector") &&
		items(len(in.AMR), "intent.amr") && items(len(in.Tokens), "intent.tokens") &&
		items(len(in.Delegates), "intent.delegates") && items(len(in.Outputs), "intent.outputs")
	for i := 0; ok && i < len(in.AMR); i++ {
		ok = str(in.AMR[i], "intent.amr.@items")
	}
	if ok && in.Token != nil {
		ok = token(in.Token, "intent.token")
	}
	for i := 0; ok && i < len(in.Tokens); i++ {
		ok = token(&in.Tokens[i], "intent.tokens.@items")
	}
	for i := 0; ok && i < len(in.Delegates); i++ {
		ok = str(in.Delegates[i], "intent.delegates.@items")
	}
	for i := 0; ok && i < len(in.Outputs); i++ {
		ok = str(in.Outputs[i].Address, "intent.outputs.@items.address") && str(in.Outputs[i].Script, "intent.outputs.@items.script")
	}
	if ok && in.TypedData != nil {
		d := in.TypedData.Domain
		ok = str(in.TypedData.PrimaryType, "intent.typed_data.primary_type") && str(d.Name, "intent.typed_data.domain.name") &&
			str(d.Version, "intent.typed_data.domain.version") && str(d.VerifyingContract, "intent.typed_data.domain.verifying_contract") &&
			str(d.Salt, "intent.typed_data.domain.salt")
	}
	return ok
}
