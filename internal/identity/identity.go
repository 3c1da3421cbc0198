// Package identity describes who is making a request, as the authentication
// layer established it. It is shared by auth (which builds it), policy
// (which decides on it) and the HTTP layer (which carries it).
package identity

import "time"

// Roles.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// Principal is an authenticated caller.
type Principal struct {
	// Subject is the stable principal id: a username, or "apikey:<id>".
	Subject string
	// SessionID is the session ("sid") of a user token; empty for API keys.
	SessionID string
	// APIKeyID is set when the caller authenticated with an API key.
	APIKeyID string
	// Owner is the user an API key acts for; for a user it equals Subject.
	Owner string
	Role  string
	// AMR lists authentication methods (RFC 8176), e.g. ["pwd","otp"].
	AMR      []string
	AuthTime time.Time
	// TokenID is the JWT "jti" (empty for API keys).
	TokenID string
	// Scopes restricts an API key: allowed actions and accounts. Empty
	// slices on a user principal mean "no restriction beyond ownership".
	Actions  []string
	Accounts []string
}

// HasMFA reports whether the principal authenticated with a second factor.
func (p *Principal) HasMFA() bool {
	for _, m := range p.AMR {
		if m == "otp" || m == "mfa" {
			return true
		}
	}
	return false
}

// IsAPIKey reports whether the principal is a service principal.
func (p *Principal) IsAPIKey() bool { return p.APIKeyID != "" }
