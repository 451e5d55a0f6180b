package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
)

// seedStep loads one capability's demo data. Steps run in order; each must
// be idempotent, so seeding twice changes nothing.
type seedStep struct {
	name  string
	order int
	fn    func(ctx context.Context, env *Env, d *database) error
}

var seedSteps []seedStep

func registerSeed(s seedStep) { seedSteps = append(seedSteps, s) }

func seedDemo(ctx context.Context, env *Env, d *database) error {
	steps := slices.Clone(seedSteps)
	slices.SortStableFunc(steps, func(a, b seedStep) int { return a.order - b.order })
	for _, s := range steps {
		if err := s.fn(ctx, env, d); err != nil {
			return fmt.Errorf("seed %s: %w", s.name, err)
		}
	}
	return nil
}

func init() {
	register(&command{
		name:    "seed",
		summary: "Load demo data: the county's facilities, one user per role, and more.\nIdempotent: seeding twice changes nothing.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			demo := fs.Bool("demo", false, "load the demo data set (required; the only data set so far)")
			return func(ctx context.Context, _ []string) error {
				if !*demo {
					return &ExitError{Code: 2, Err: fmt.Errorf("say which data set: --demo")}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				if _, err := d.Migrate(ctx); err != nil {
					return err
				}
				return seedDemo(ctx, env, d)
			}
		},
	})
}
