// Package postgres is the shared storage backend: every node of a cluster
// reads and writes one PostgreSQL table, and learns of the others' writes
// through LISTEN/NOTIFY.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/internal/keypath"
)

// notifyChannel is the LISTEN/NOTIFY channel; the payload is the changed key.
const notifyChannel = "moonvault_kv"

// defaultConnectTimeout applies when the URL sets no connect_timeout, so a
// database that hangs on connect fails requests instead of stalling them.
const defaultConnectTimeout = 5 * time.Second

// defaultMaxConns applies when the URL sets no pool_max_conns.
const defaultMaxConns = 16

// The statements below run through pgx's default QueryExecModeCacheStatement:
// each pooled connection prepares a statement on first use and reuses it, so
// the hot path sends only Bind/Execute. Writes call pg_notify in the same
// statement, so the notification is delivered exactly when the write commits.
const (
	sqlGet = `SELECT value FROM moonvault_kv WHERE key = $1`
	sqlPut = `WITH w AS (
		INSERT INTO moonvault_kv (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
		RETURNING key)
	SELECT pg_notify('` + notifyChannel + `', key) FROM w`
	sqlDelete = `WITH d AS (DELETE FROM moonvault_kv WHERE key = $1 RETURNING key)
	SELECT pg_notify('` + notifyChannel + `', key) FROM d`
	sqlPutQuiet = `INSERT INTO moonvault_kv (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`
	// A creating put fails with unique_violation when the key exists, which
	// rolls back the whole batch (its implicit transaction).
	sqlCreate = `WITH w AS (
		INSERT INTO moonvault_kv (key, value) VALUES ($1, $2) RETURNING key)
	SELECT pg_notify('` + notifyChannel + `', key) FROM w`
	sqlCreateQuiet = `INSERT INTO moonvault_kv (key, value) VALUES ($1, $2)`
	sqlDeleteQuiet = `DELETE FROM moonvault_kv WHERE key = $1`
	// Compare-and-swap: each statement returns the key when it wrote, and no
	// row when the stored value was not the expected one.
	sqlCASInsert = `INSERT INTO moonvault_kv (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO NOTHING RETURNING key`
	sqlCASUpdate = `UPDATE moonvault_kv SET value = $3 WHERE key = $1 AND value = $2 RETURNING key`
	sqlCASDelete = `DELETE FROM moonvault_kv WHERE key = $1 AND value = $2 RETURNING key`
	sqlCASAbsent = `SELECT key FROM (SELECT $1::text AS key) k
		WHERE NOT EXISTS (SELECT 1 FROM moonvault_kv WHERE key = $1)`
	// Range scans on the primary key: [start, end) minus `after`; LIMIT NULL
	// means no limit.
	sqlListRange = `SELECT key FROM moonvault_kv WHERE key >= $1 AND key < $2 AND key <> $3 ORDER BY key LIMIT $4`
	sqlListFrom  = `SELECT key FROM moonvault_kv WHERE key >= $1 AND key <> $2 ORDER BY key LIMIT $3`
)

// Backend is a storage.Backend and storage.Subscriber on PostgreSQL.
type Backend struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	notifySome     bool
	notifyPrefixes []string

	// listener state; the listener starts with the first Subscribe.
	mu      sync.Mutex
	subs    map[uint64]func(string)
	nextID  uint64
	stop    context.CancelFunc
	stopped chan struct{}
	closed  bool
}

var (
	_ storage.Backend    = (*Backend)(nil)
	_ storage.Subscriber = (*Backend)(nil)
)

// Open connects to url (a postgres:// URL or key=value DSN), checks the
// connection and applies the embedded schema migrations. An unreachable
// database gives an error wrapping storage.ErrUnavailable.
func Open(ctx context.Context, url string, log *slog.Logger) (*Backend, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (max(4, NumCPU)) caps concurrent commits; the
		// server group-commits what we send it, so allow more in flight.
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: create pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrapErr(ctx, "connect", err)
	}
	if err := migrate(ctx, pool, log); err != nil {
		pool.Close()
		return nil, wrapErr(ctx, "migrate", err)
	}
	return &Backend{pool: pool, log: log, subs: map[uint64]func(string){}}, nil
}

// Close stops the listener and closes the pool. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	stop, stopped := b.stop, b.stopped
	b.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
	b.pool.Close()
	return nil
}

// Get returns the value of key or an error wrapping storage.ErrNotFound.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := keypath.Check(key); err != nil {
		return nil, err
	}
	var v []byte
	err := b.pool.QueryRow(ctx, sqlGet, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: get %q: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return nil, wrapErr(ctx, "get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// NotifyOnly limits notifications to keys under the given prefixes; call it
// before the backend is used. PostgreSQL serialises the commits of
// transactions that NOTIFY (they cannot share a WAL flush), which cuts write
// throughput about 4.5x, so a vault notifies only for the rare writes other
// nodes must see at once (revocations, keyring and signing-key rotation)
// and reads the rest from the database on demand.
func (b *Backend) NotifyOnly(prefixes ...string) {
	b.notifyPrefixes = append([]string(nil), prefixes...)
	b.notifySome = true
}

func (b *Backend) notifies(key string) bool {
	if !b.notifySome {
		return true
	}
	for _, p := range b.notifyPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func (b *Backend) putSQL(key string) string {
	if b.notifies(key) {
		return sqlPut
	}
	return sqlPutQuiet
}

func (b *Backend) deleteSQL(key string) string {
	if b.notifies(key) {
		return sqlDelete
	}
	return sqlDeleteQuiet
}

// Put creates or replaces key in one autocommitted statement.
func (b *Backend) Put(ctx context.Context, key string, value []byte) error {
	if err := keypath.Check(key); err != nil {
		return err
	}
	if _, err := b.pool.Exec(ctx, b.putSQL(key), key, nonNil(value)); err != nil {
		return wrapErr(ctx, "put", err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := keypath.Check(key); err != nil {
		return err
	}
	if _, err := b.pool.Exec(ctx, b.deleteSQL(key), key); err != nil {
		return wrapErr(ctx, "delete", err)
	}
	return nil
}

// Batch applies ops atomically in one round trip: pgx pipelines the
// statements behind a single Sync, which PostgreSQL runs as one implicit
// transaction (docs, "Pipelining" in the frontend/backend protocol): any
// failure rolls back every op, and the notifications go out at commit.
func (b *Backend) Batch(ctx context.Context, ops []storage.Op) error {
	for i, op := range ops {
		if err := keypath.Check(op.Key); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, op := range ops {
		switch {
		case op.Delete:
			batch.Queue(b.deleteSQL(op.Key), op.Key)
		case op.Create && b.notifies(op.Key):
			batch.Queue(sqlCreate, op.Key, nonNil(op.Value))
		case op.Create:
			batch.Queue(sqlCreateQuiet, op.Key, nonNil(op.Value))
		default:
			batch.Queue(b.putSQL(op.Key), op.Key, nonNil(op.Value))
		}
	}
	if err := b.pool.SendBatch(ctx, batch).Close(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation: a Create lost
			return fmt.Errorf("postgres: batch: a created key exists: %w", storage.ErrConflict)
		}
		return wrapErr(ctx, "batch", err)
	}
	return nil
}

// CompareAndSwap writes next at key only if the stored value is old (see
// storage.Backend): one conditional statement, atomic under PostgreSQL's
// row locking whichever node sends it. A notified key is announced in the
// same statement, as for Put.
func (b *Backend) CompareAndSwap(ctx context.Context, key string, old, next []byte) error {
	if err := keypath.Check(key); err != nil {
		return err
	}
	var sql string
	var args []any
	switch {
	case old == nil && next == nil:
		sql, args = sqlCASAbsent, []any{key}
	case old == nil:
		sql, args = sqlCASInsert, []any{key, nonNil(next)}
	case next == nil:
		sql, args = sqlCASDelete, []any{key, old}
	default:
		sql, args = sqlCASUpdate, []any{key, old, nonNil(next)}
	}
	if b.notifies(key) && sql != sqlCASAbsent {
		sql = `WITH w AS (` + sql + `) SELECT pg_notify('` + notifyChannel + `', key) FROM w`
	}
	rows, err := b.pool.Query(ctx, sql, args...)
	if err != nil {
		return wrapErr(ctx, "compare-and-swap", err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return wrapErr(ctx, "compare-and-swap", err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: compare-and-swap %q: %w", key, storage.ErrConflict)
	}
	return nil
}

// List returns keys in byte order (the column is COLLATE "C").
func (b *Backend) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := keypath.CheckPrefix("prefix", prefix); err != nil {
		return nil, err
	}
	if err := keypath.CheckPrefix("after", after); err != nil {
		return nil, err
	}
	start := max(prefix, after)
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	var rows pgx.Rows
	var err error
	if end := keypath.PrefixEnd(prefix); end != "" {
		rows, err = b.pool.Query(ctx, sqlListRange, start, end, after, lim)
	} else {
		rows, err = b.pool.Query(ctx, sqlListFrom, start, after, lim)
	}
	if err != nil {
		return nil, wrapErr(ctx, "list", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrapErr(ctx, "list", err)
	}
	return keys, nil
}

// nonNil maps a nil value to empty: pgx encodes nil []byte as NULL.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// wrapErr marks connection-level failures with storage.ErrUnavailable. A
// server error about the statement itself (constraint, syntax) is not an
// outage; every other failure (dial refused, reset, EOF, closed pool, a
// deadline while connecting or waiting) is, and so fails closed as 503. A
// caller that canceled its own context gets the cancellation back instead.
func wrapErr(ctx context.Context, op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !connectionClass(pgErr.Code) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return fmt.Errorf("postgres: %s: %w: %w", op, storage.ErrUnavailable, err)
}

// connectionClass reports SQLSTATEs that mean the server or connection is
// unusable: 08 connection exception, 53 insufficient resources (e.g. too many
// connections), 57P operator intervention (admin/crash shutdown, cannot
// connect now), 58 system error. (PostgreSQL docs, Appendix A.)
func connectionClass(code string) bool {
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") ||
		strings.HasPrefix(code, "57P") || strings.HasPrefix(code, "58")
}

// Update implements storage.KV: a read-modify-write over CompareAndSwap.
func (b *Backend) Update(ctx context.Context, key string, fn storage.UpdateFunc) error {
	return storage.Update(ctx, b, key, fn)
}
