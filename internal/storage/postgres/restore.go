package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// ErrTableBusy: the switch could not lock the table in time (a snapshot
// still streaming holds it); nothing changed.
var ErrTableBusy = errkind.New(errkind.Unavailable, "storage_busy",
	"the restore could not lock the storage table within 10 s (a snapshot being taken or a long transaction holds it); nothing changed: retry when it ends")

// replacedPrefix and replacedLayout name a kept table:
// moonvault_kv_replaced_<UTC time>_<microseconds> (identifiers hold no '.').
const (
	replacedPrefix = "moonvault_kv_replaced_"
	replacedLayout = "20060102t150405"
)

// commitLockTimeout bounds the wait for the table lock at commit (a
// variable for tests).
var commitLockTimeout = 10 * time.Second

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
	b        *Backend
	conn     *pgxpool.Conn
	rows     [][]any
	size     int
	done     bool
	expect   map[string][]byte // nil value: absent
	replaced storage.ReplacedCopy
}

func (s *pgStaging) Expect(key string, value []byte) {
	if s.expect == nil {
		s.expect = map[string][]byte{}
	}
	if value != nil {
		value = append([]byte{}, value...)
	}
	s.expect[key] = value
}

func (s *pgStaging) Replaced() storage.ReplacedCopy { return s.replaced }

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
// the restored rows; none sees a mix. Under that lock the expectations are
// checked, so no node can change what they name before the switch. The
// replaced table is kept, renamed. The notification with an empty key
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
	at := time.Now().UTC().Truncate(time.Microsecond)
	keep := replacedName(at)
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		for _, stmt := range []string{
			fmt.Sprintf(`SET LOCAL lock_timeout = %d`, commitLockTimeout.Milliseconds()),
			`LOCK TABLE moonvault_kv IN ACCESS EXCLUSIVE MODE`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return lockErr(stmt, err)
			}
		}
		if err := s.checkExpect(ctx, tx); err != nil {
			return err
		}
		for _, stmt := range []string{
			`ALTER TABLE moonvault_kv RENAME CONSTRAINT moonvault_kv_pkey TO ` + keep + `_pkey`,
			`ALTER TABLE moonvault_kv RENAME TO ` + keep,
			`ALTER TABLE ` + stagingTable + ` RENAME TO moonvault_kv`,
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
		if errors.Is(err, storage.ErrConflict) || errors.Is(err, ErrTableBusy) {
			return err
		}
		return wrapErr(ctx, "switch to the restored table", err)
	}
	s.replaced = storage.ReplacedCopy{Name: keep, At: at}
	return nil
}

// lockErr reports a lock timeout as ErrTableBusy.
func lockErr(stmt string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
		return ErrTableBusy
	}
	return fmt.Errorf("%s: %w", stmt, err)
}

// checkExpect compares the expectations with the live table, which the
// caller has locked.
func (s *pgStaging) checkExpect(ctx context.Context, tx pgx.Tx) error {
	if len(s.expect) == 0 {
		return nil
	}
	keys := make([]string, 0, len(s.expect))
	for k := range s.expect {
		keys = append(keys, k)
	}
	rows, err := tx.Query(ctx, `SELECT key, value FROM moonvault_kv WHERE key = ANY($1)`, keys)
	if err != nil {
		return fmt.Errorf("check expectations: %w", err)
	}
	live := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return fmt.Errorf("check expectations: %w", err)
		}
		if v == nil {
			v = []byte{}
		}
		live[k] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check expectations: %w", err)
	}
	for _, k := range keys {
		want := s.expect[k]
		got, found := live[k]
		if found != (want != nil) || (found && !bytes.Equal(got, want)) {
			return fmt.Errorf("postgres: %s changed since the restore began: %w", k, storage.ErrConflict)
		}
	}
	return nil
}

// ReplacedCopies lists the tables kept by earlier restores, oldest first.
func (b *Backend) ReplacedCopies(ctx context.Context) ([]storage.ReplacedCopy, error) {
	rows, err := b.pool.Query(ctx, `SELECT tablename FROM pg_tables
		WHERE schemaname = current_schema() AND starts_with(tablename, $1)`, replacedPrefix)
	if err != nil {
		return nil, wrapErr(ctx, "list replaced copies", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrapErr(ctx, "list replaced copies", err)
	}
	var out []storage.ReplacedCopy
	for _, n := range names {
		if at, ok := replacedTime(n); ok {
			out = append(out, storage.ReplacedCopy{Name: n, At: at})
		}
	}
	slices.SortFunc(out, func(x, y storage.ReplacedCopy) int { return x.At.Compare(y.At) })
	return out, nil
}

// DropReplaced drops a table kept by an earlier restore.
func (b *Backend) DropReplaced(ctx context.Context, name string) error {
	if _, ok := replacedTime(name); !ok {
		return fmt.Errorf("postgres: %q is not a replaced copy of moonvault_kv", name)
	}
	if _, err := b.pool.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return wrapErr(ctx, "drop replaced copy", err)
	}
	return nil
}

func replacedName(at time.Time) string {
	return fmt.Sprintf("%s%s_%06d", replacedPrefix, at.Format(replacedLayout), at.Nanosecond()/1000)
}

func replacedTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, replacedPrefix)
	if !ok {
		return time.Time{}, false
	}
	sec, micro, ok := strings.Cut(rest, "_")
	if !ok || len(micro) != 6 {
		return time.Time{}, false
	}
	at, err := time.Parse(replacedLayout, sec)
	us, uerr := strconv.Atoi(micro)
	if err != nil || uerr != nil || us < 0 {
		return time.Time{}, false
	}
	return at.Add(time.Duration(us) * time.Microsecond), true
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
