// Package migrations holds the numbered SQL schema changes, embedded in the
// binary and applied by goose. Each file runs in its own transaction.
//
// Numbering: 0001 foundation (facility), 0002 auth, 0003 household,
// 0004 settlement, 0005 referral, 0006 consult; later changes take the
// next free number.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed *.sql
var files embed.FS

// FS is the embedded migration files.
func FS() fs.FS { return files }

func provider(pool *pgxpool.Pool) (*goose.Provider, *sql.DB, error) {
	sqldb := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, sqldb, files)
	if err != nil {
		sqldb.Close()
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	return p, sqldb, nil
}

// Up applies every pending migration and returns the resulting version.
func Up(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	p, sqldb, err := provider(pool)
	if err != nil {
		return 0, err
	}
	defer sqldb.Close()
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("migrate up: %w", err)
	}
	return p.GetDBVersion(ctx)
}

// Latest is the highest migration version this binary knows.
func Latest() int64 {
	var v int64
	entries, _ := fs.ReadDir(files, ".")
	for _, e := range entries {
		var n int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &n); err == nil && n > v {
			v = n
		}
	}
	return v
}

// ErrSchemaMismatch is returned by Check when the database schema is not the
// one this binary was built for.
var ErrSchemaMismatch = errors.New("database schema does not match this binary")

// Check verifies that the database is at exactly the version this binary
// knows: an older schema needs `qinba migrate`, a newer one a newer binary.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	var v int64
	err := pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return fmt.Errorf("%w: no migration table (run `qinba migrate`): %v", ErrSchemaMismatch, err)
	}
	switch latest := Latest(); {
	case v < latest:
		return fmt.Errorf("%w: database at version %d, binary needs %d: run `qinba migrate`", ErrSchemaMismatch, v, latest)
	case v > latest:
		return fmt.Errorf("%w: database at version %d is newer than this binary (%d): upgrade the binary", ErrSchemaMismatch, v, latest)
	}
	return nil
}
