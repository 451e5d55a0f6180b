// Package migrations holds the numbered SQL schema changes, embedded in the
// binary and applied by goose. Each file runs in its own transaction.
//
// Numbering: 0001 foundation (facility), 0002 auth, 0003 household,
// 0004 settlement, 0005 referral, 0006 consult, 0007 settlement service,
// 0008 person name search without a trigram index; later changes take the
// next free number.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
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

// AppRole is the database role the server connects as. It owns nothing:
// it may read and write the application's tables but not change the
// schema, and it cannot update or delete rows of append-only tables
// (those guarded by the refuse_change trigger: audit log, journal, events).
const AppRole = "qinba_app"

// Up applies every pending migration as the schema owner (pool's user) and
// then grants the application role its privileges. It returns the
// resulting version.
func Up(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	p, sqldb, err := provider(pool)
	if err != nil {
		return 0, err
	}
	defer sqldb.Close()
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("migrate up: %w", err)
	}
	if err := grantApp(ctx, pool); err != nil {
		return 0, fmt.Errorf("grant %s: %w", AppRole, err)
	}
	return p.GetDBVersion(ctx)
}

// grantApp (re)applies the application role's privileges; it is idempotent
// and runs after every migration, so new tables are covered.
func grantApp(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// Roles are cluster-wide: serialise their creation between databases.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4243)`); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(4243)`)
	var dbname string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&dbname); err != nil {
		return err
	}
	stmts := []string{
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + AppRole + `') THEN
				CREATE ROLE ` + AppRole + ` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
			END IF;
		END $$`,
		`GRANT CONNECT, TEMPORARY ON DATABASE ` + pgx.Identifier{dbname}.Sanitize() + ` TO ` + AppRole,
		`GRANT USAGE ON SCHEMA public TO ` + AppRole,
		`REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + AppRole,
		`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ` + AppRole,
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON goose_db_version FROM ` + AppRole,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%.60s: %w", s, err)
		}
	}
	// Append-only tables: whatever has the refuse_change trigger.
	rows, err := conn.Query(ctx, `SELECT DISTINCT c.relname FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE p.proname = 'refuse_change' AND NOT t.tgisinternal`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		if _, err := conn.Exec(ctx, `REVOKE UPDATE, DELETE, TRUNCATE ON `+pgx.Identifier{t}.Sanitize()+` FROM `+AppRole); err != nil {
			return err
		}
	}
	return nil
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
