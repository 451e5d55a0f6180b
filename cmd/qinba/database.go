package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/pgcluster"
	"github.com/qinba/qinba/migrations"
)

// dbFlags are the database flags every command that needs the database has.
type dbFlags struct {
	url        string
	migrateURL string
	varDir     string
}

func (f *dbFlags) register(fs *flag.FlagSet, env *Env) {
	fs.StringVar(&f.url, "database-url", env.Getenv("DATABASE_URL"),
		"PostgreSQL URL the server uses (env DATABASE_URL); empty starts the private cluster under --var/pg")
	fs.StringVar(&f.migrateURL, "migrate-url", env.Getenv("QINBA_MIGRATE_URL"),
		"PostgreSQL URL of the schema owner, for migrations (env QINBA_MIGRATE_URL); empty means --database-url")
	fs.StringVar(&f.varDir, "var", envOr(env, "QINBA_VAR", "var"), "directory for local state: the private cluster, keys (env QINBA_VAR)")
}

// database is an open pool and, when we started the private cluster, the
// means to stop it again.
type database struct {
	// Pool connects as the application: with the private cluster, the
	// least-privileged role migrations.AppRole.
	Pool *pgxpool.Pool
	URL  string
	// OwnerURL connects as the schema owner; migrations run there.
	OwnerURL string
	cluster  *pgcluster.Cluster
	started  bool
}

// Migrate applies pending migrations as the schema owner.
func (d *database) Migrate(ctx context.Context) (int64, error) {
	owner, err := db.Open(ctx, d.OwnerURL)
	if err != nil {
		return 0, err
	}
	defer owner.Close()
	return migrations.Up(ctx, owner)
}

// open connects to --database-url, or starts (or reuses) the private
// cluster and connects to its qinba database.
func (f *dbFlags) open(ctx context.Context, env *Env) (*database, error) {
	d := &database{URL: f.url, OwnerURL: f.migrateURL}
	if d.OwnerURL == "" {
		d.OwnerURL = f.url
	}
	if d.URL == "" {
		ctx2, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		unlock, err := pgcluster.Lock(ctx2, filepath.Join(f.varDir, "pg.lock"))
		if err != nil {
			return nil, err
		}
		defer unlock()
		c := pgcluster.New(filepath.Join(f.varDir, "pg"))
		wasRunning := c.Running(ctx2)
		if !wasRunning {
			fmt.Fprintf(env.Stderr, "qinba: starting the private PostgreSQL cluster in %s\n", c.Dir)
		}
		if err := c.Start(ctx2); err != nil {
			return nil, err
		}
		d.cluster, d.started = c, !wasRunning
		if err := c.CreateDatabase(ctx2, "qinba"); err != nil {
			d.Close(ctx)
			return nil, err
		}
		d.OwnerURL = c.URL("qinba")
		d.URL = c.UserURL(migrations.AppRole, "qinba")
	}
	pool, err := db.Open(ctx, d.URL)
	if err != nil {
		d.Close(ctx)
		return nil, err
	}
	d.Pool = pool
	return d, nil
}

// Close closes the pool and stops the private cluster if this process
// started it.
func (d *database) Close(ctx context.Context) {
	if d.Pool != nil {
		d.Pool.Close()
	}
	if d.started {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = d.cluster.Stop(ctx)
	}
}

func init() {
	register(&command{
		name:    "migrate",
		summary: "Apply the embedded schema migrations to the database.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, _ []string) error {
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				v, err := d.Migrate(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "schema at version %d\n", v)
				return nil
			}
		},
	})
}
