package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reconnect backoff of the listener connection.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second

	firstListenWait = 5 * time.Second
)

// Subscribe registers fn for every committed change, by this node or any
// other sharing the database. fn("") follows every (re)connect of the
// listener, since notifications sent while it was down are lost. fn runs on
// the listener goroutine, so it must be quick.
//
// The first Subscribe starts the listener and waits (at most firstListenWait)
// until it listens, so that writes made right after it returns are seen.
func (b *Backend) Subscribe(fn func(key string)) (cancel func()) {
	b.mu.Lock()
	id := b.nextID
	b.nextID++
	b.subs[id] = fn
	var ready chan struct{}
	if b.stop == nil && !b.closed {
		ctx, stop := context.WithCancel(context.Background())
		ready = make(chan struct{})
		b.stop, b.stopped = stop, make(chan struct{})
		go b.listen(ctx, ready, b.stopped)
	}
	b.mu.Unlock()
	if ready != nil {
		select {
		case <-ready:
		case <-time.After(firstListenWait):
		}
	}
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}
}

// dispatch calls the current subscribers outside the lock, so fn may
// subscribe or cancel.
func (b *Backend) dispatch(key string) {
	b.mu.Lock()
	fns := make([]func(string), 0, len(b.subs))
	for _, fn := range b.subs {
		fns = append(fns, fn)
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(key)
	}
}

// listen holds one dedicated connection in LISTEN, reconnecting with
// exponential backoff until ctx is canceled.
func (b *Backend) listen(ctx context.Context, ready, stopped chan struct{}) {
	defer close(stopped)
	backoff := minBackoff
	var once sync.Once
	for {
		err := b.listenOnce(ctx, func() {
			backoff = minBackoff
			once.Do(func() { close(ready) })
		})
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("storage change listener disconnected", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (b *Backend) listenOnce(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	b.dispatch("") // anything may have changed while we were not listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		if n.Channel == notifyChannel {
			b.dispatch(n.Payload)
		}
	}
}
