package clientaddr

import (
	"net/netip"
	"testing"
)

func TestClient(t *testing.T) {
	trusted := NewResolver([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")})
	none := NewResolver(nil)
	for _, tc := range []struct {
		name   string
		r      *Resolver
		remote string
		xff    []string
		want   string
	}{
		{"no proxies configured: header ignored", none, "192.0.2.1:443", []string{"198.51.100.7"}, "192.0.2.1"},
		{"untrusted peer: header ignored", trusted, "192.0.2.1:443", []string{"198.51.100.7"}, "192.0.2.1"},
		{"trusted peer, one hop", trusted, "10.1.2.3:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client-written entries left of the real one are ignored", trusted, "10.1.2.3:443", []string{"1.1.1.1, 198.51.100.7"}, "198.51.100.7"},
		{"chain of trusted proxies", trusted, "10.1.2.3:443", []string{"198.51.100.7, 10.9.9.9", "10.8.8.8"}, "198.51.100.7"},
		{"all hops trusted: the left-most", trusted, "10.1.2.3:443", []string{"10.5.5.5"}, "10.5.5.5"},
		{"malformed hop ends the chain", trusted, "10.1.2.3:443", []string{"198.51.100.7, garbage"}, "10.1.2.3"},
		{"no header from a trusted peer", trusted, "10.1.2.3:443", nil, "10.1.2.3"},
		{"IPv6 proxy and client", trusted, "[fd00::1]:443", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped peer", trusted, "[::ffff:10.1.2.3]:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"not host:port", none, "192.0.2.9", nil, "192.0.2.9"},
	} {
		if got := tc.r.Client(tc.remote, tc.xff).String(); got != tc.want {
			t.Errorf("%s: Client = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8::1", "2001:db8::2", true},
		{"2001:db8:0:0:ffff::1", "2001:db8::1", true},
		{"2001:db8:0:1::1", "2001:db8::1", false},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"fe80::1%eth0", "fe80::2", true},
	} {
		if got := Key(tc.a) == Key(tc.b); got != tc.same {
			t.Errorf("Key(%s)=%s, Key(%s)=%s: same %v, want %v", tc.a, Key(tc.a), tc.b, Key(tc.b), got, tc.same)
		}
	}
}
