package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// writer is the single goroutine that orders lines: it takes whatever is
// queued (up to BatchMax), chains and checkpoints it, and writes it with one
// durable write per sink. Requests arriving during that write form the next
// batch, so the batch size grows with load (group commit) and an idle log
// adds no wait to a lone request.
func (l *Log) writer() {
	defer close(l.done)
	batch := make([]pending, 0, l.opts.BatchMax)
	var timer *time.Timer
	var lastStart time.Time
	last := 0
	for {
		batch = batch[:0]
		select {
		case p := <-l.queue:
			batch = append(batch, p)
		case <-l.quit:
			l.drain(batch)
			return
		}
		// Under concurrency (other callers in flight, or, when they are
		// not counted, a previous batch of several lines) the batch may
		// wait for more.
		var deadline time.Time
		if l.opts.FlushInterval > 0 && (last > 1 || l.opts.CountCallers) {
			deadline = lastStart.Add(l.opts.FlushInterval)
		}
		batch = l.fill(batch, deadline, &timer)
		lastStart, last = time.Now(), len(batch)
		l.finish(batch, l.commit(batch))
	}
}

// fill adds queued lines to batch without waiting or, under concurrency,
// until deadline: at most one commit per FlushInterval, sooner when every
// caller still to record a line is in the batch (Options.CountCallers; a lone
// request is committed at once). The spacing is measured from the start of
// the previous commit, so a slow fsync adds no wait, and a lone request is
// never delayed. (An earlier version re-armed a timer on every arrival, so
// a busy log waited a whole interval after each one while every request in
// the batch idled: issue 14.)
func (l *Log) fill(batch []pending, deadline time.Time, timer **time.Timer) []pending {
	for len(batch) < l.opts.BatchMax {
		select {
		case p := <-l.queue:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	wait := time.Until(deadline)
	if deadline.IsZero() || wait <= 0 || len(batch) >= l.opts.BatchMax || l.everyoneIn(len(batch)) {
		return batch
	}
	if *timer == nil {
		*timer = time.NewTimer(wait)
	} else {
		(*timer).Reset(wait)
	}
	defer (*timer).Stop()
	for len(batch) < l.opts.BatchMax {
		select {
		case p := <-l.queue:
			batch = append(batch, p)
			if l.everyoneIn(len(batch)) {
				return batch
			}
		case <-(*timer).C:
			return batch
		}
	}
	return batch
}

// everyoneIn says whether a batch of n lines holds a line of every caller
// in flight (Options.CountCallers), so that waiting longer gains nothing.
// A caller leaving does not wake the writer: the interval bounds the wait.
func (l *Log) everyoneIn(n int) bool {
	return l.opts.CountCallers && int64(n) >= l.callers.Load()
}

// drain commits what is still queued at Close.
func (l *Log) drain(batch []pending) {
	for {
		batch = batch[:0]
	fill:
		for len(batch) < l.opts.BatchMax {
			select {
			case p := <-l.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		l.finish(batch, l.commit(batch))
	}
}

func (l *Log) finish(batch []pending, err error) {
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
}

// commit chains the batch, appends a checkpoint, and writes it to every
// sink. It returns nil if at least one sink made it durable. If none did,
// the chain state is rolled back: the batch never happened anywhere.
func (l *Log) commit(batch []pending) error {
	seq0, prev0 := l.seq, l.prev
	buf := l.buf[:0]
	for i := range batch {
		p := &batch[i]
		start := len(buf)
		l.seq++
		buf = appendLine(buf, l.seq, &l.prev, p.typ, p.body)
		l.prev = sha256.Sum256(buf[start:])
		buf = append(buf, '\n')
		if p.pooled != nil { // copied: give the buffer back
			*p.pooled = p.body[:0]
			bodyPool.Put(p.pooled)
			p.pooled, p.body = nil, nil
		}
	}
	l.seq++
	start := len(buf)
	l.keyMu.RLock()
	var keyID string
	var sig []byte
	if l.keys != nil && l.keys.signer != nil {
		keyID, sig = l.keys.id, signCheckpoint(l.keys.signer, l.seq, &l.prev)
	}
	l.keyMu.RUnlock()
	buf = appendCheckpoint(buf, l.seq, &l.prev, keyID, sig)
	l.prev = sha256.Sum256(buf[start:])
	buf = append(buf, '\n')
	l.buf = buf

	ok := l.writeSinks(buf)
	if !ok {
		l.seq, l.prev = seq0, prev0
		errs := make([]error, 0, len(l.sinks))
		for _, s := range l.sinks {
			errs = append(errs, s.err)
		}
		return fmt.Errorf("%w: no sink recorded the batch: %w", ErrUnavailable, errors.Join(errs...))
	}
	for _, s := range l.sinks {
		if s.err != nil {
			if len(s.backlog)+len(buf) > maxBacklog {
				l.log.Error("audit sink backlog exceeded; its copy of the chain will have a gap",
					"sink", s.sink.Name(), "dropped_bytes", len(s.backlog))
				s.backlog = s.backlog[:0]
			}
			s.backlog = append(s.backlog, buf...)
		}
	}
	l.head.Store(&Head{Seq: l.seq, Hash: hex.EncodeToString(l.prev[:])})
	l.lines.Add(uint64(len(batch)) + 1)
	l.batches.Add(1)
	return nil
}

// writeSinks writes buf (after each sink's backlog) to every sink, in
// parallel when there are several, and reports whether any succeeded.
func (l *Log) writeSinks(buf []byte) bool {
	write := func(s *sinkState) {
		data := buf
		if len(s.backlog) > 0 {
			data = append(s.backlog[:len(s.backlog):len(s.backlog)], buf...)
		}
		s.err = s.sink.Write(data)
	}
	if len(l.sinks) == 1 {
		write(l.sinks[0])
	} else {
		var wg sync.WaitGroup
		for _, s := range l.sinks {
			wg.Go(func() { write(s) })
		}
		wg.Wait()
	}
	ok := false
	for _, s := range l.sinks {
		switch {
		case s.err == nil:
			ok = true
			if s.failing {
				l.log.Info("audit sink recovered", "sink", s.sink.Name(), "replayed_bytes", len(s.backlog))
			}
			s.failing, s.backlog = false, nil
		default:
			l.sinkFailures.Add(1)
			if !s.failing {
				l.log.Error("audit sink failed", "sink", s.sink.Name(), "err", s.err)
			}
			s.failing = true
		}
	}
	return ok
}
