package audit

// SetMaxBytes changes the size at which the file rotates (configuration
// reload); 0 never rotates. It applies from the next batch.
func (s *FileSink) SetMaxBytes(n int64) {
	if n < 0 {
		return
	}
	s.mu.Lock()
	s.maxBytes = n
	s.mu.Unlock()
}
