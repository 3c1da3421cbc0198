package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/internal/keypath"
)

const (
	stagingTable = "moonvault_kv_staging"
	// restoreLock is the session advisory lock that admits one restore per
	// database, whichever node runs it ("moonrstr" as an int64).
	restoreLock int64 = 0x6d6f6f6e72737472
	// Staged rows are sent with COPY in chunks of at most this many rows
	// or bytes, so a restore's memory stays bounded.
	copyRows  = 5000
	copyBytes = 16 << 20
)

// ErrRestoreInProgress refuses a restore while another runs on the same
// database (this node or another).
var ErrRestoreInProgress = errkind.New(errkind.Conflict, "restore_in_progress", "a restore is already in progress on this database (this node or another)")

type pgView struct {
	conn  *pgxpool.Conn
	tx    pgx.Tx
	count int64
}

// View opens a REPEATABLE READ, READ ONLY transaction: every statement in
// it sees the database as of its first statement, while other sessions go
// on writing (PostgreSQL docs, "Repeatable Read Isolation Level").
func (b *Backend) View(ctx context.Context) (storage.View, error) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, wrapErr(ctx, "snapshot", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Release()
		return nil, wrapErr(ctx, "snapshot", err)
	}
	v := &pgView{conn: conn, tx: tx}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM moonvault_kv`).Scan(&v.count); err != nil {
		_ = v.Close()
		return nil, wrapErr(ctx, "snapshot count", err)
	}
	return v, nil
}

func (v *pgView) Count() int64 { return v.count }

func (v *pgView) Each(ctx context.Context, fn func(key string, value []byte) error) error {
	rows, err := v.tx.Query(ctx, `SELECT key, value FROM moonvault_kv ORDER BY key`)
	if err != nil {
		return wrapErr(ctx, "snapshot read", err)
	}
	defer rows.Close()
	var key string
	var val []byte
	for rows.Next() {
		if err := rows.Scan(&key, &val); err != nil {
			return wrapErr(ctx, "snapshot read", err)
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrapErr(ctx, "snapshot read", err)
	}
	return nil
}

func (v *pgView) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := v.tx.Rollback(ctx)
	v.conn.Release()
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return wrapErr(ctx, "snapshot close", err)
	}
	return nil
}

// pgStaging fills a staging table shaped like moonvault_kv (LIKE ...
// INCLUDING ALL: same columns, collation and primary key) on one
// connection that holds the restore lock.
type pgStaging struct {
	b    *Backend
	conn *pgxpool.Conn
	rows [][]any
	size int
	done bool
}

// BeginRestore takes the restore lock and creates an empty staging table.
func (b *Backend) BeginRestore(ctx context.Context) (storage.Staging, error) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, wrapErr(ctx, "restore", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, restoreLock).Scan(&locked); err != nil {
		conn.Release()
		return nil, wrapErr(ctx, "restore lock", err)
	}
	if !locked {
		conn.Release()
		return nil, ErrRestoreInProgress
	}
	s := &pgStaging{b: b, conn: conn}
	// A staging table left by a crashed restore is never the live table.
	_, err = conn.Exec(ctx, `DROP TABLE IF EXISTS `+stagingTable+`;
		CREATE TABLE `+stagingTable+` (LIKE moonvault_kv INCLUDING ALL)`)
	if err != nil {
		s.finish()
		return nil, wrapErr(ctx, "create staging table", err)
	}
	return s, nil
}

func (s *pgStaging) Put(ctx context.Context, key string, value []byte) error {
	if s.done {
		return errors.New("postgres: staging already finished")
	}
	if err := keypath.Check(key); err != nil {
		return err
	}
	v := append([]byte{}, value...) // the caller may reuse value
	s.rows = append(s.rows, []any{key, v})
	s.size += len(key) + len(v)
	if len(s.rows) >= copyRows || s.size >= copyBytes {
		return s.flush(ctx)
	}
	return nil
}

func (s *pgStaging) flush(ctx context.Context) error {
	if len(s.rows) == 0 {
		return nil
	}
	rows := s.rows
	s.rows, s.size = nil, 0
	if _, err := s.conn.CopyFrom(ctx, pgx.Identifier{stagingTable}, []string{"key", "value"}, pgx.CopyFromRows(rows)); err != nil {
		return wrapErr(ctx, "stage records", err)
	}
	return nil
}

// Commit swaps the staging table in for moonvault_kv in one transaction:
// readers and writers on every node wait on the table lock and then see
// the restored rows; none sees a mix. The notification with an empty key
// goes out at commit and tells every node's subscribers to resync.
// Prepared statements on other connections are re-planned by PostgreSQL
// against the new table, which has the same name and shape.
func (s *pgStaging) Commit(ctx context.Context) error {
	if s.done {
		return errors.New("postgres: staging already finished")
	}
	defer s.finish()
	if err := s.flush(ctx); err != nil {
		s.drop()
		return err
	}
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		for _, stmt := range []string{
			`LOCK TABLE moonvault_kv IN ACCESS EXCLUSIVE MODE`,
			`ALTER TABLE moonvault_kv RENAME TO moonvault_kv_replaced`,
			`ALTER TABLE ` + stagingTable + ` RENAME TO moonvault_kv`,
			`DROP TABLE moonvault_kv_replaced`,
			`ALTER TABLE moonvault_kv RENAME CONSTRAINT ` + stagingTable + `_pkey TO moonvault_kv_pkey`,
			`SELECT pg_notify('` + notifyChannel + `', '')`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	})
	if err != nil {
		s.drop()
		return wrapErr(ctx, "switch to the restored table", err)
	}
	return nil
}

func (s *pgStaging) Abort() error {
	if s.done {
		return nil
	}
	s.drop()
	s.finish()
	return nil
}

// drop removes the staging table (best effort: a leftover is dropped by the
// next restore).
func (s *pgStaging) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = s.conn.Exec(ctx, `DROP TABLE IF EXISTS `+stagingTable)
}

// finish releases the restore lock and the connection; a connection whose
// unlock failed is closed, which releases the lock too.
func (s *pgStaging) finish() {
	if s.done {
		return
	}
	s.done = true
	s.rows = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, restoreLock); err != nil {
		_ = s.conn.Conn().Close(ctx)
	}
	s.conn.Release()
}

var (
	_ storage.Snapshotter = (*Backend)(nil)
	_ storage.Restorer    = (*Backend)(nil)
)
