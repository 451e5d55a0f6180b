package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qinba/qinba/auth"
)

// Demo accounts created by `qinba seed --demo`: one per role, at sensible
// facilities of the demo county (Baokang, 420626). Their password is
// public; demo only.
const demoPassword = "demo-pass-2019"

var demoUsers = []struct {
	username, facility, display string
	role                        auth.Role
}{
	{"demo.village", "V420626-001", "村医 (demo)", auth.RoleVillageDoctor},
	{"demo.township", "T420626-01", "乡镇医生 (demo)", auth.RoleDoctor},
	{"demo.county", "K420626-01", "县医院医生 (demo)", auth.RoleDoctor},
	{"demo.billing", "K420626-01", "结算员 (demo)", auth.RoleBillingClerk},
	{"demo.admin", "K420626-01", "卫健局管理员 (demo)", auth.RoleAdmin},
	{"demo.auditor", "K420626-01", "审计员 (demo)", auth.RoleAuditor},
}

// keySecret returns the secret that encrypts signing keys at rest:
// QINBA_KEY_SECRET, or the contents of the file QINBA_KEY_SECRET_FILE.
// Nil means keys are stored in plaintext.
func keySecret(getenv func(string) string) ([]byte, error) {
	if s := getenv("QINBA_KEY_SECRET"); s != "" {
		return []byte(s), nil
	}
	if f := getenv("QINBA_KEY_SECRET_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("QINBA_KEY_SECRET_FILE: %w", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	return nil, nil
}

// cliContext marks audit entries written by a command as such.
func cliContext(ctx context.Context, env *Env) context.Context {
	return auth.WithMeta(ctx, auth.RequestMeta{IP: "cli", UserAgent: "qinba cli (" + env.Getenv("USER") + ")"})
}

func init() {
	registerMount(mount{name: "auth", order: 0, fn: func(a *App) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The server has no Env; the key secret comes from the process
		// environment like the other QINBA_ settings read by serve.
		secret, err := keySecret(os.Getenv)
		if err != nil {
			return err
		}
		keys, err := auth.OpenKeyStore(ctx, a.Pool, auth.KeyStoreConfig{Secret: secret, Log: a.Log})
		if err != nil {
			return err
		}
		issuer := a.Config.Issuer
		if issuer == "" {
			issuer = "qinba"
		}
		svc, err := auth.NewService(a.Pool, keys, auth.Config{Issuer: issuer, Log: a.Log})
		if err != nil {
			return err
		}
		a.Auth = svc
		a.Authn = svc.Authenticate
		a.Echo.Use(auth.MetaMiddleware)
		svc.Routes(a.Public, a.API)
		a.Echo.GET("/.well-known/jwks.json", svc.JWKS)
		a.OnBackground(svc.Run)
		return a.AddOpenAPI(auth.OpenAPI)
	}})

	registerSeed(seedStep{name: "users", order: 20, fn: func(ctx context.Context, env *Env, d *database) error {
		ctx = cliContext(ctx, env)
		added := 0
		for _, du := range demoUsers {
			if _, err := auth.GetUserByName(ctx, d.Pool, du.username); err == nil {
				continue
			}
			u, err := auth.CreateUser(ctx, d.Pool, auth.NewUser{Username: du.username, Password: demoPassword, Role: du.role,
				Facility: du.facility, DisplayName: du.display})
			if err != nil {
				return fmt.Errorf("demo user %s: %w", du.username, err)
			}
			if err := auth.Audit(ctx, d.Pool, auth.Entry{Action: "create", RecordType: "user", RecordID: u.Username,
				Facility: u.Facility, Username: "seed", Detail: map[string]any{"role": string(u.Role), "demo": true}}); err != nil {
				return err
			}
			added++
		}
		fmt.Fprintf(env.Stdout, "users: %d demo users added, %d already there\n", added, len(demoUsers)-added)
		fmt.Fprintf(env.Stdout, "\nDEMO LOGINS (demo only: these passwords are public; never seed --demo a production database)\n")
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  role\tfacility\tusername\tpassword")
		for _, du := range demoUsers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", du.role, du.facility, du.username, demoPassword)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout)
		return nil
	}})

	register(&command{
		name: "user add",
		summary: "Create a user account. The password is read from stdin (first line; at least 10 characters),\n" +
			"never from the command line: printf '%s\\n' \"$PW\" | qinba user add --password-stdin ...",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			facility := fs.String("facility", "", "code of the user's facility (required), e.g. T420626-01")
			role := fs.String("role", "", "the user's role (required): village_doctor (village facility), doctor (township, county or city), billing_clerk, admin (county or city), auditor")
			username := fs.String("username", "", "login name (required): 3-64 of a-z 0-9 . _ -")
			display := fs.String("display-name", "", "name shown in the UI (optional)")
			pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin (required)")
			return func(ctx context.Context, args []string) error {
				if len(args) != 0 {
					return &ExitError{Code: 2, Err: fmt.Errorf("unexpected arguments %q (use the flags)", args)}
				}
				if !*pwStdin {
					return &ExitError{Code: 2, Err: errors.New("give --password-stdin and the password on stdin (never on the command line)")}
				}
				if *facility == "" || *role == "" || *username == "" {
					return &ExitError{Code: 2, Err: errors.New("--facility, --role and --username are required")}
				}
				pw, err := readPassword(env.Stdin)
				if err != nil {
					return err
				}
				if err := auth.CheckPassword(pw, auth.NormalizeUsername(*username)); err != nil {
					return &ExitError{Code: 1, Err: cliError(err)}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				ctx = cliContext(ctx, env)
				u, err := auth.CreateUser(ctx, d.Pool, auth.NewUser{Username: *username, Password: pw, Role: auth.Role(*role),
					Facility: *facility, DisplayName: *display})
				if err != nil {
					return &ExitError{Code: 1, Err: cliError(err)}
				}
				if err := auth.Audit(ctx, d.Pool, auth.Entry{Action: "create", RecordType: "user", RecordID: u.Username,
					Facility: u.Facility, Username: "cli", Detail: map[string]any{"role": string(u.Role)}}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "user %s created: %s at %s (%s)\n", u.Username, u.Role, u.Facility, u.Tier)
				return nil
			}
		},
	})

	register(&command{
		name:    "user disable",
		args:    "USERNAME",
		summary: "Disable a user account: its logins are refused and its tokens stop working at once.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 {
					return &ExitError{Code: 2, Err: errors.New("give exactly one username")}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				ctx = cliContext(ctx, env)
				u, err := auth.DisableUser(ctx, d.Pool, args[0])
				if err != nil {
					return &ExitError{Code: 1, Err: cliError(err)}
				}
				if err := auth.Audit(ctx, d.Pool, auth.Entry{Action: "disable", RecordType: "user", RecordID: u.Username,
					Facility: u.Facility, Username: "cli"}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "user %s disabled\n", u.Username)
				return nil
			}
		},
	})

	keysCommand := func(name, summary string, run func(ctx context.Context, env *Env, d *database, ks *auth.KeyStore) error) *command {
		return &command{
			name:    name,
			summary: summary,
			setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
				var df dbFlags
				df.register(fs, env)
				return func(ctx context.Context, args []string) error {
					if len(args) != 0 {
						return &ExitError{Code: 2, Err: fmt.Errorf("unexpected arguments %q", args)}
					}
					secret, err := keySecret(env.Getenv)
					if err != nil {
						return err
					}
					d, err := df.open(ctx, env)
					if err != nil {
						return err
					}
					defer d.Close(ctx)
					ks, err := auth.OpenKeyStore(ctx, d.Pool, auth.KeyStoreConfig{Secret: secret})
					if err != nil {
						return err
					}
					return run(cliContext(ctx, env), env, d, ks)
				}
			},
		}
	}
	register(keysCommand("keys rotate",
		"Add a new token-signing key; it signs from now on. Older keys stay published in the JWKS\n"+
			"(and keep verifying) until every token they signed has expired. Running servers reload at once.\n"+
			"With QINBA_KEY_SECRET (or QINBA_KEY_SECRET_FILE) set, the private key is stored encrypted.",
		func(ctx context.Context, env *Env, d *database, ks *auth.KeyStore) error {
			old, _ := ks.SigningKey()
			kid, err := ks.Rotate(ctx)
			if err != nil {
				return err
			}
			if err := auth.Audit(ctx, d.Pool, auth.Entry{Action: "rotate", RecordType: "signing_key", RecordID: kid, Username: "cli",
				Detail: map[string]any{"previous": old}}); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "new signing key %s (previous %s stays published for its tokens' lifetime)\n", kid, old)
			return nil
		}))
	register(keysCommand("keys list", "List the token-signing keys: current, published (verifying) or retired.",
		func(ctx context.Context, env *Env, d *database, ks *auth.KeyStore) error {
			infos, err := ks.List(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "kid\tcreated\tstatus\tat rest")
			for _, k := range infos {
				status := "retired"
				switch {
				case k.Current:
					status = "current"
				case k.Published:
					status = "published"
				}
				rest := "plaintext"
				if k.Encrypted {
					rest = "encrypted"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Kid, k.Created.Format(time.RFC3339), status, rest)
			}
			return tw.Flush()
		}))
}

// readPassword reads the first line of r (at most 4 KiB), without its
// line ending.
func readPassword(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("no stdin to read the password from")
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", &ExitError{Code: 1, Err: errors.New("no password on stdin")}
	}
	return line, nil
}

// cliError renders an application error (with its fields) for a terminal.
func cliError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "invalid: "))
}
