package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/qinba/qinba/migrations"
)

func init() {
	register(&command{
		name:    "serve",
		summary: "Run the HTTP server (API, UI, consult media) until interrupted.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			cfg := Config{}
			fs.StringVar(&cfg.Addr, "addr", envOr(env, "QINBA_ADDR", "127.0.0.1:8080"), "listen address (env QINBA_ADDR)")
			fs.StringVar(&cfg.BodyLimit, "body-limit", "12M", "largest request body accepted (uploads included)")
			fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
			fs.StringVar(&cfg.TLSCert, "tls-cert", env.Getenv("QINBA_TLS_CERT"), "TLS certificate file (env QINBA_TLS_CERT); with --tls-key serves HTTPS")
			fs.StringVar(&cfg.TLSKey, "tls-key", env.Getenv("QINBA_TLS_KEY"), "TLS private key file (env QINBA_TLS_KEY)")
			fs.StringVar(&cfg.Issuer, "issuer", envOr(env, "QINBA_ISSUER", "qinba"), "token issuer name (env QINBA_ISSUER)")
			cfg.Referral.RegisterFlags(fs)
			consultDone := cfg.Consult.RegisterFlags(fs, env)
			fs.StringVar(&cfg.PolicyDir, "policy-dir", env.Getenv("QINBA_POLICY_DIR"), policyDirHelp)
			migrate := fs.Bool("migrate", false, "apply pending migrations before serving")
			demo := fs.Bool("seed-demo", false, "load the demo data (facilities, users, ...) before serving and print the demo logins")
			logJSON := fs.Bool("log-json", env.Getenv("QINBA_LOG_JSON") != "", "log as JSON lines (env QINBA_LOG_JSON)")
			return func(ctx context.Context, _ []string) error {
				cfg.VarDir = df.varDir
				if err := consultDone(df.varDir); err != nil {
					return err
				}
				log := newLogger(env, *logJSON)
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				if *migrate {
					if _, err := d.Migrate(ctx); err != nil {
						return err
					}
				}
				if err := migrations.Check(ctx, d.Pool); err != nil {
					return err
				}
				if *demo {
					if err := seedDemo(ctx, env, d); err != nil {
						return err
					}
				}
				app, err := NewApp(cfg, log, d.Pool)
				if err != nil {
					return err
				}
				if err := app.Listen(); err != nil {
					return err
				}
				scheme := "http"
				if cfg.TLSCert != "" {
					scheme = "https"
				}
				fmt.Fprintf(env.Stdout, "qinba: serving on %s://%s/\n", scheme, app.Addr())
				log.Info("serving", "addr", app.Addr())
				return app.Run(ctx)
			}
		},
	})
}

func newLogger(env *Env, asJSON bool) *slog.Logger {
	w := env.Stderr
	if w == nil {
		w = os.Stderr
	}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
