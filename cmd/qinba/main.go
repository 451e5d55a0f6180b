// Command qinba is the one binary of the Qinba telemedicine referral and
// one-stop settlement system. Run `qinba help` for its subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Capability files register theirs with
// register() in an init function, so each capability's wiring lives in
// its own file.
type command struct {
	name    string // e.g. "serve" or "facilities import"
	args    string // synopsis of the positional arguments
	summary string
	// setup declares the command's flags on fs (defaults may come from
	// env) and returns the function that runs it with the positional
	// arguments left after parsing.
	setup func(fs *flag.FlagSet, env *Env) func(ctx context.Context, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// Env is what a command may touch: its standard streams. Commands take it
// instead of reaching for os.Stdout, so tests can run them in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// ExitError carries a specific exit status.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	err := Run(ctx, env, os.Args[1:])
	stop()
	if err != nil {
		code := 1
		var ee *ExitError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "qinba:", err)
		} else {
			code = 0
		}
		os.Exit(code)
	}
}

// Run runs the subcommand named by args.
func Run(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, rest := lookup(args[1:]); c != nil && len(rest) == 0 {
				return runCommand(ctx, env, c, []string{"-h"})
			}
		}
		usage(env.Stdout)
		if len(args) == 0 {
			return &ExitError{Code: 2, Err: errors.New("no command given")}
		}
		return nil
	}
	c, rest := lookup(args)
	if c == nil {
		usage(env.Stderr)
		return &ExitError{Code: 2, Err: fmt.Errorf("unknown command %q", strings.Join(args, " "))}
	}
	return runCommand(ctx, env, c, rest)
}

// lookup finds the longest command name that prefixes args.
func lookup(args []string) (*command, []string) {
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, nil
}

func runCommand(ctx context.Context, env *Env, c *command, args []string) error {
	fs := flag.NewFlagSet("qinba "+c.name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	run := c.setup(fs, env)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: qinba %s [flags] %s\n\n%s\n", c.name, c.args, c.summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &ExitError{Code: 2, Err: err}
	}
	return run(ctx, positional)
}

// parseInterspersed parses flags wherever they are among the arguments
// (`qinba devdb stop --dir X` as well as `qinba devdb --dir X stop`) and
// returns the others in order; everything after "--" is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// Parse stops at the first argument, or just after a "--".
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "qinba: telemedicine referral and one-stop settlement for a county health network")
	fmt.Fprintln(w, "\nusage: qinba COMMAND [flags] [args]    (qinba help COMMAND, or qinba COMMAND -h, for details)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, firstLine(commands[n].summary))
	}
	fmt.Fprintln(w, "\nenvironment:")
	fmt.Fprintln(w, "  DATABASE_URL   PostgreSQL URL; when unset, a private PostgreSQL cluster under ./var/pg is used")
	fmt.Fprintln(w, "  QINBA_ADDR     listen address of `qinba serve` (default 127.0.0.1:8080)")
	fmt.Fprintln(w, "  QINBA_VAR      directory of the private cluster and other local state (default ./var)")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// envOr returns the environment variable name's value, or def.
func envOr(env *Env, name, def string) string {
	if v := env.Getenv(name); v != "" {
		return v
	}
	return def
}
