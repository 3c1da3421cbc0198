package auth

import "time"

// SessionTimeouts reports how long a session may stay unused (idle) and
// its absolute lifetime, so that a client such as the web console can end
// its own session when the server would.
func (s *Service) SessionTimeouts() (idle, lifetime time.Duration) {
	return s.cfg.IdleTimeout, s.cfg.SessionLifetime
}
