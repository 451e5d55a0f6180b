package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/qinba/qinba/internal/pgcluster"
)

// pgTool finds a PostgreSQL client program (pg_dump, pg_restore).
func pgTool(name string) (string, error) {
	if dir := pgcluster.LookupBinDir(); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install the PostgreSQL client (apt-get install -y postgresql-client)", name)
	}
	return p, nil
}

func init() {
	register(&command{
		name:    "backup",
		args:    "FILE",
		summary: "Dump the whole database (schema and data) to FILE with pg_dump's custom format.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return &ExitError{Code: 2, Err: errors.New("give the backup file to write")}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				tool, err := pgTool("pg_dump")
				if err != nil {
					return err
				}
				tmp := args[0] + ".partial"
				cmd := exec.CommandContext(ctx, tool, "--format=custom", "--file="+tmp, "--dbname="+d.OwnerURL)
				if out, err := cmd.CombinedOutput(); err != nil {
					os.Remove(tmp)
					return fmt.Errorf("pg_dump: %v: %s", err, out)
				}
				// Only a complete dump takes the final name.
				if err := os.Rename(tmp, args[0]); err != nil {
					return err
				}
				st, _ := os.Stat(args[0])
				fmt.Fprintf(env.Stdout, "backup written to %s (%d bytes)\n", args[0], st.Size())
				return nil
			}
		},
	})
	register(&command{
		name:    "restore",
		args:    "FILE",
		summary: "Restore a `qinba backup` FILE into the database, replacing what is there, in one transaction.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return &ExitError{Code: 2, Err: errors.New("give the backup file to restore")}
				}
				if _, err := os.Stat(args[0]); err != nil {
					return err
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				d.Pool.Close() // nothing of ours may hold the database while it is replaced
				tool, err := pgTool("pg_restore")
				if err != nil {
					return err
				}
				cmd := exec.CommandContext(ctx, tool, "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
					"--dbname="+d.OwnerURL, args[0])
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("pg_restore: %v: %s", err, out)
				}
				fmt.Fprintf(env.Stdout, "restored %s\n", args[0])
				return nil
			}
		},
	})
}
