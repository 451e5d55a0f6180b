package migrations_test

import (
	"context"
	"testing"

	"github.com/qinba/qinba/internal/dbtest"
	"github.com/qinba/qinba/migrations"
)

// The server's role can read and write application tables, but not change
// the schema nor rewrite append-only rows.
func TestAppRoleIsLeastPrivileged(t *testing.T) {
	t.Parallel()
	_, app := dbtest.NewApp(t)
	ctx := context.Background()
	var user string
	if err := app.QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil || user != migrations.AppRole {
		t.Fatalf("connected as %q (%v)", user, err)
	}
	if _, err := app.Exec(ctx, `INSERT INTO audit_log (action) VALUES ('test')`); err != nil {
		t.Fatalf("insert audit row: %v", err)
	}
	if _, err := app.Exec(ctx, `INSERT INTO facility (code, name, tier, region_code) VALUES ('C1', 'x', 'city', '420600')`); err != nil {
		t.Fatalf("insert facility: %v", err)
	}
	refused := []string{
		`UPDATE audit_log SET action = 'x'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
		`ALTER TABLE facility ADD COLUMN x int`,
		`DROP TABLE facility`,
		`CREATE TABLE sneaky (id int)`,
		`DELETE FROM goose_db_version`,
	}
	for _, sql := range refused {
		if _, err := app.Exec(ctx, sql); err == nil {
			t.Errorf("%s: allowed for the app role", sql)
		}
	}
	var rows int
	if err := app.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("audit rows = %d (%v), want 1", rows, err)
	}
}

func TestCheckAcceptsCurrentSchema(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	if err := migrations.Check(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if migrations.Latest() < 2 {
		t.Fatalf("Latest() = %d", migrations.Latest())
	}
}
