// Package clientaddr says which client sent a request, and how clients are
// grouped for rate limits: the one place both the HTTP limits and the
// login throttle take an address from.
//
// Behind a reverse proxy or load balancer every connection comes from the
// proxy, so the client is named by X-Forwarded-For; but any client can
// send that header, so it is honoured only from a configured trusted
// proxy, and then read from the right: the right-most address that is not
// itself a trusted proxy is the client (the entries left of it were
// written by the client and prove nothing). This is what Vault's
// x_forwarded_for_authorized_addrs and nginx's real_ip_recursive do.
package clientaddr

import (
	"net"
	"net/netip"
	"strings"
)

// Resolver finds the client address of a request.
type Resolver struct {
	trusted []netip.Prefix
}

// NewResolver trusts X-Forwarded-For from peers within trusted (none:
// the header is ignored).
func NewResolver(trusted []netip.Prefix) *Resolver {
	out := make([]netip.Prefix, len(trusted))
	for i, p := range trusted {
		out[i] = p.Masked()
	}
	return &Resolver{trusted: out}
}

// maxHops bounds how many X-Forwarded-For entries are read.
const maxHops = 32

// Client returns the client address of a request that came from
// remoteAddr ("host:port", as net/http gives it) with the given
// X-Forwarded-For header values. It returns the peer address when the
// peer is not a trusted proxy or the header names no usable address.
func (r *Resolver) Client(remoteAddr string, xff []string) netip.Addr {
	peer := parseHost(remoteAddr)
	if !peer.IsValid() || len(r.trusted) == 0 || len(xff) == 0 || !r.isTrusted(peer) {
		return peer
	}
	client := peer
	hops := 0
	// Right to left over every header line, then every entry.
	for i := len(xff) - 1; i >= 0; i-- {
		entries := strings.Split(xff[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			if hops++; hops > maxHops {
				return client
			}
			a, err := netip.ParseAddr(strings.TrimSpace(entries[j]))
			if err != nil || a.Zone() != "" {
				// A malformed hop: the chain of trust ends at the last
				// address a trusted proxy vouched for.
				return client
			}
			client = a.Unmap()
			if !r.isTrusted(client) {
				return client
			}
		}
	}
	return client
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func parseHost(remoteAddr string) netip.Addr {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Key is the rate-limit key of a client address: the address itself for
// IPv4, its /64 for IPv6 (one subscriber or host usually holds a whole /64,
// RFC 6177, so per-/128 limits would give each client 2^64 buckets). An
// address that does not parse is its own key.
func Key(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	return KeyOf(a)
}

// KeyOf is Key for a parsed address.
func KeyOf(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
