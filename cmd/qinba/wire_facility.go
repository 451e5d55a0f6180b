package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
)

func init() {
	registerMount(mount{name: "facility", order: 10, fn: func(a *App) error {
		h := facility.NewHandler(a.Pool)
		h.RegionOf = func(ctx context.Context) string {
			if p := auth.PrincipalFrom(ctx); p != nil && p.Region != "" {
				return p.Region
			}
			return "!"
		}
		h.Denied = func(ctx context.Context, reason string) {
			a.Log.WarnContext(ctx, "denied", "route", "POST /api/v1/facilities/import", "reason", reason)
			_ = auth.Audit(ctx, a.Pool, auth.Entry{Action: "deny", RecordType: "facility_import", Detail: map[string]any{"reason": reason}})
		}
		h.Routes(a.API, auth.Allow(a.Pool, a.Log, auth.RoleAdmin))
		return a.AddOpenAPI(facility.OpenAPI)
	}})
	registerSeed(seedStep{name: "facilities", order: 10, fn: func(ctx context.Context, env *Env, d *database) error {
		res, err := facility.Import(ctx, d.Pool, bytes.NewReader(facility.DemoCSV))
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "facilities: %d added, %d updated, %d unchanged\n", res.Added, res.Updated, res.Unchanged)
		return nil
	}})
	register(&command{
		name:    "facilities import",
		args:    "FILE.csv",
		summary: "Load or update facilities from a CSV (code,name,tier,parent_code,region_code).\nAll or nothing: every bad line is printed and nothing is written. Re-importing the same file changes nothing.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return &ExitError{Code: 2, Err: errors.New("give exactly one CSV file")}
				}
				data, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				res, err := facility.Import(ctx, d.Pool, bytes.NewReader(data))
				if err != nil {
					if ae, ok := apperr.As(err); ok && ae.Code == apperr.Invalid {
						fmt.Fprintln(env.Stderr, ae.Message)
						return &ExitError{Code: 1, Err: errors.New("import rejected, nothing written")}
					}
					return err
				}
				fmt.Fprintf(env.Stdout, "facilities: %d added, %d updated, %d unchanged\n", res.Added, res.Updated, res.Unchanged)
				return nil
			}
		},
	})
	register(&command{
		name:    "facilities stats",
		summary: "Print the number of facilities per tier.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, _ []string) error {
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				st, err := facility.NewStore(d.Pool).Stats(ctx)
				if err != nil {
					return err
				}
				fmt.Fprint(env.Stdout, facility.FormatStats(st))
				return nil
			}
		},
	})
}
