package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/qinba/qinba/internal/pgcluster"
)

func init() {
	register(&command{
		name:    "devdb",
		args:    "start|stop|status|url",
		summary: "Manage the private PostgreSQL cluster used when DATABASE_URL is unset.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			dir := fs.String("dir", filepath.Join(envOr(env, "QINBA_VAR", "var"), "pg"), "cluster directory (the test suite's is var/pgtest)")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return &ExitError{Code: 2, Err: errors.New("say start, stop, status or url")}
				}
				c := pgcluster.New(*dir)
				switch args[0] {
				case "start":
					if err := c.Start(ctx); err != nil {
						return err
					}
					fmt.Fprintln(env.Stdout, c.URL("postgres"))
				case "stop":
					return c.Stop(ctx)
				case "status":
					if c.Running(ctx) {
						fmt.Fprintln(env.Stdout, "running")
						return nil
					}
					fmt.Fprintln(env.Stdout, "stopped")
					return &ExitError{Code: 3, Err: errors.New("not running")}
				case "url":
					if !c.Running(ctx) {
						return &ExitError{Code: 3, Err: errors.New("not running")}
					}
					if err := c.Start(ctx); err != nil { // reads the port
						return err
					}
					fmt.Fprintln(env.Stdout, c.URL("postgres"))
				default:
					return &ExitError{Code: 2, Err: fmt.Errorf("unknown action %q", args[0])}
				}
				return nil
			}
		},
	})
}
