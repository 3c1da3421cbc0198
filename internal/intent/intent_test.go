package intent

import "testing"

func TestNormalize(t *testing.T) {
	in := &Intent{
		Token:   &Token{Method: "transfer"},
		Tokens:  []Token{{Method: "transfer"}, {Method: "approve"}},
		Outputs: []Output{{Address: "a"}},
	}
	in.Normalize()
	if in.Value == nil || in.Value.Sign() != 0 {
		t.Fatal("value not zero")
	}
	if in.Token.Amount == nil || in.Outputs[0].Value == nil {
		t.Fatal("token or output amount left nil")
	}
	for i, tk := range in.Tokens {
		if tk.Amount == nil {
			t.Fatalf("tokens[%d] amount left nil", i)
		}
	}
}
