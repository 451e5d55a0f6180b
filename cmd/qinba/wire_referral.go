package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/qinba/qinba/referral"
)

func init() {
	registerMount(mount{name: "referral", order: 40, fn: func(a *App) error {
		// Deadlines and intervals come from serve's --referral-* flags.
		policy := a.Config.Referral
		if policy.AcceptWithin == nil {
			policy = referral.DefaultPolicy()
		}
		svc, err := referral.NewService(a.Pool, a.Log, policy, referral.SystemClock{})
		if err != nil {
			return err
		}
		referral.NewHandler(svc).Routes(a.API)
		// One LISTEN connection per server feeds every stream subscriber;
		// the escalator scans for overdue referrals. Both stop with the
		// server (the hub closes every stream when it returns).
		a.OnBackground(svc.Hub().Run)
		a.OnBackground(svc.RunEscalator)
		return a.AddOpenAPI(referral.OpenAPI)
	}})
	register(&command{
		name:    "referrals escalate",
		summary: "Escalate once every referral not accepted by its deadline (the server does this every 30 s).\nIdempotent and safe to run beside running servers. Deadlines are fixed when a referral is sent.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, _ []string) error {
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				svc, err := referral.NewService(d.Pool, nil, referral.DefaultPolicy(), referral.SystemClock{})
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				n, err := svc.Escalate(cliContext(ctx, env))
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "referrals escalated: %d\n", n)
				return nil
			}
		},
	})
}
