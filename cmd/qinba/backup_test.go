package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/dbtest"
)

// countRows returns the number of rows of every application table.
func countRows(t *testing.T, url string) map[string]int {
	t.Helper()
	ctx := context.Background()
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	out := map[string]int{}
	for _, tb := range tables {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM "`+tb+`"`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[tb] = n
	}
	return out
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	src, dst := dbtest.NewURL(t), dbtest.NewURL(t)
	file := filepath.Join(t.TempDir(), "qinba.dump")
	var out bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	ctx := context.Background()
	if err := Run(ctx, env, []string{"seed", "--demo", "--database-url", src}); err != nil {
		t.Fatalf("seed: %v\n%s", err, out.String())
	}
	if err := Run(ctx, env, []string{"backup", "--database-url", src, file}); err != nil {
		t.Fatalf("backup: %v\n%s", err, out.String())
	}
	if err := Run(ctx, env, []string{"restore", "--database-url", dst, file}); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	want, got := countRows(t, src), countRows(t, dst)
	if len(want) == 0 || want["facility"] != 299 || want["settlement"] == 0 || want["journal_line"] == 0 {
		t.Fatalf("source not seeded (facilities, a settled year): %v", want)
	}
	for tb, n := range want {
		if got[tb] != n {
			t.Errorf("%s: %d rows after restore, want %d", tb, got[tb], n)
		}
	}
	// The restored database serves the app role as before.
	if err := Run(ctx, env, []string{"facilities", "stats", "--database-url", dbtest.AppURL(dst)}); err != nil {
		t.Fatalf("stats as app role after restore: %v", err)
	}
	out.Reset()
	if err := Run(ctx, env, []string{"verify", "--database-url", dst}); err != nil {
		t.Fatalf("verify after restore: %v\n%s", err, out.String())
	}
	if err := Run(ctx, env, []string{"restore", "--database-url", dst, file + ".missing"}); err == nil {
		t.Error("restoring a missing file succeeded")
	}
}
