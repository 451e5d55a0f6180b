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
	url    string
	varDir string
}

func (f *dbFlags) register(fs *flag.FlagSet, env *Env) {
	fs.StringVar(&f.url, "database-url", env.Getenv("DATABASE_URL"),
		"PostgreSQL URL (env DATABASE_URL); empty starts the private cluster under --var/pg")
	fs.StringVar(&f.varDir, "var", envOr(env, "QINBA_VAR", "var"), "directory for local state: the private cluster, keys (env QINBA_VAR)")
}

// database is an open pool and, when we started the private cluster, the
// means to stop it again.
type database struct {
	Pool    *pgxpool.Pool
	URL     string
	cluster *pgcluster.Cluster
	started bool
}

// open connects to --database-url, or starts (or reuses) the private
// cluster and connects to its qinba database.
func (f *dbFlags) open(ctx context.Context, env *Env) (*database, error) {
	d := &database{URL: f.url}
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
		d.URL = c.URL("qinba")
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
				v, err := migrations.Up(ctx, d.Pool)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "schema at version %d\n", v)
				return nil
			}
		},
	})
}
