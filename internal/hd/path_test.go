package hd

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
)

func TestParsePathGood(t *testing.T) {
	for _, c := range []struct {
		in, canon string
		want      Path
	}{
		{"m", "m", Path{}},
		{"m/0", "m/0", Path{0}},
		{"m/0'", "m/0'", Path{H(0)}},
		{"m/0h", "m/0'", Path{H(0)}},
		{"m/0H", "m/0'", Path{H(0)}},
		{"m/44'/60'/0'/0/7", "m/44'/60'/0'/0/7", Path{H(44), H(60), H(0), 0, 7}},
		{"m/84h/1h/0h/1/2147483647", "m/84'/1'/0'/1/2147483647", Path{H(84), H(1), H(0), 1, 2147483647}},
		{"m/2147483647'", "m/2147483647'", Path{0xffffffff}},
		{"m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", "m/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", Path{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
	} {
		p, err := ParsePath(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if len(p) != len(c.want) {
			t.Errorf("%q = %v, want %v", c.in, p, c.want)
			continue
		}
		for i := range p {
			if p[i] != c.want[i] {
				t.Errorf("%q = %v, want %v", c.in, p, c.want)
			}
		}
		if p.String() != c.canon {
			t.Errorf("%q renders as %q, want %q", c.in, p.String(), c.canon)
		}
	}
}

func TestParsePathFail(t *testing.T) {
	f, err := os.Open("testdata/fail_paths.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		in, want, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("malformed line %q", line)
		}
		n++
		_, err := ParsePath(in)
		if err == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q does not say %q", in, err, want)
		}
		if !errors.Is(err, ErrInvalidPath) || errkind.Of(err) != errkind.Invalid {
			t.Errorf("%q: error %v is not an invalid-path error", in, err)
		}
	}
	if n < 20 {
		t.Fatalf("only %d cases", n)
	}
}

func TestPathHelpers(t *testing.T) {
	p := Path{H(44), H(501)}
	c := p.Child(H(3))
	c2 := p.Child(H(4))
	if c.String() != "m/44'/501'/3'" || c2.String() != "m/44'/501'/4'" || len(p) != 2 {
		t.Fatalf("Child aliases its parent: %s %s %s", p, c, c2)
	}
	if !c.Hardened() || (Path{H(1), 0}).Hardened() || !(Path{}).Hardened() {
		t.Fatal("Hardened is wrong")
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"m", "m/0", "m/44'/60'/0'/0/0", "m/0h/1H", "m/2147483648", "m//", "m/01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("error without the sentinel: %v", err)
			}
			return
		}
		again, err := ParsePath(p.String())
		if err != nil || again.String() != p.String() {
			t.Fatalf("%q -> %q does not round-trip: %v", s, p.String(), err)
		}
	})
}
