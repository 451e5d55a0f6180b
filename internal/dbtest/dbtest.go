// Package dbtest gives each test a real, isolated PostgreSQL database with
// the current migrations applied. It uses TEST_DATABASE_URL when set (a
// superuser connection to an existing server), and otherwise starts the
// project's private test cluster under ./var/pgtest, shared by all test
// binaries of one `go test ./...` run. Each test gets its own database,
// cloned from a migrated template in a few milliseconds and dropped when
// the test ends.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/pgcluster"
	"github.com/qinba/qinba/migrations"
)

var (
	once     sync.Once
	baseURL  string
	tmplName string
	initErr  error
	cluster  *pgcluster.Cluster
)

// RepoRoot is the directory holding go.mod, found from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	baseURL = os.Getenv("TEST_DATABASE_URL")
	if baseURL == "" {
		root, err := RepoRoot()
		if err != nil {
			initErr = err
			return
		}
		unlock, err := pgcluster.Lock(ctx, filepath.Join(root, "var", "pgtest.lock"))
		if err != nil {
			initErr = err
			return
		}
		defer unlock()
		cluster = pgcluster.New(filepath.Join(root, "var", "pgtest"))
		cluster.Fast = true
		if err := cluster.Start(ctx); err != nil {
			initErr = fmt.Errorf("start test cluster: %w", err)
			return
		}
		baseURL = cluster.URL("postgres")
	}
	tmplName, initErr = ensureTemplate(ctx)
}

// Cluster returns the private test cluster, or nil when TEST_DATABASE_URL
// points elsewhere. Fault-injection tests use it to restart the server.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	once.Do(setup)
	if initErr != nil {
		t.Fatalf("test database: %v", initErr)
	}
	return cluster
}

// migrationHash names the template after the migration files, so a changed
// migration gets a fresh template.
func migrationHash() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(migrations.FS(), path)
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func ensureTemplate(ctx context.Context) (string, error) {
	name := "qinba_tmpl_" + migrationHash()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", redact(baseURL), err)
	}
	defer conn.Close(ctx)
	// One process builds the template; the others wait for it.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
		return "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(4242)`)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	pool, err := db.Open(ctx, withDB(baseURL, name))
	if err != nil {
		return "", err
	}
	_, err = migrations.Up(ctx, pool)
	pool.Close()
	if err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{name}.Sanitize()+` WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`); err != nil {
		return "", err
	}
	return name, nil
}

func withDB(u, name string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	pu.Path = "/" + name
	return pu.String()
}

func redact(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	return pu.Redacted()
}

// NewURL creates a fresh migrated database for t and returns its URL. The
// database is dropped when t ends.
func NewURL(t testing.TB) string {
	t.Helper()
	once.Do(setup)
	if initErr != nil {
		t.Fatalf("test database: %v", initErr)
	}
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "qinba_t_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` TEMPLATE `+pgx.Identifier{tmplName}.Sanitize()); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, baseURL)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
	})
	return withDB(baseURL, name)
}

// New creates a fresh migrated database for t and returns a pool on it,
// closed when t ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := NewURL(t)
	pool, err := db.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// AppURL turns a URL from NewURL (the superuser) into the same database as
// the least-privileged application role, as the server connects.
func AppURL(ownerURL string) string {
	pu, err := url.Parse(ownerURL)
	if err != nil {
		return ownerURL
	}
	pu.User = url.User(migrations.AppRole)
	return pu.String()
}

// NewApp creates a fresh migrated database for t and returns pools on it as
// the schema owner and as the application role.
func NewApp(t testing.TB) (owner, app *pgxpool.Pool) {
	t.Helper()
	u := NewURL(t)
	ctx := context.Background()
	owner, err := db.Open(ctx, u)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(owner.Close)
	app, err = db.Open(ctx, AppURL(u))
	if err != nil {
		t.Fatalf("open app pool: %v", err)
	}
	t.Cleanup(app.Close)
	return owner, app
}
