package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"

	"github.com/qinba/qinba/internal/apperr"
)

// csvImport is what the large CSV imports (import roster, import bills)
// share: one file; --skip-invalid,
// --rejects and --no-progress; progress bars while the file is read and
// written; the rejects file; the report on stdout and every bad line on
// stderr. All or nothing unless --skip-invalid.
type csvImport struct {
	df         dbFlags
	skip       *bool
	rejects    *string
	noProgress *bool
	unit       string // what a bad line takes with it: "households", "bills"
}

func newCSVImport(fs *flag.FlagSet, env *Env, unit string) *csvImport {
	ci := &csvImport{unit: unit}
	ci.df.register(fs, env)
	ci.skip = fs.Bool("skip-invalid", false, "write the good "+unit+" and put the bad lines in the rejects file, instead of rejecting the whole file")
	ci.rejects = fs.String("rejects", "", "where to write the rejected lines with their reasons (default FILE.rejects.csv); written only when lines are rejected")
	ci.noProgress = fs.Bool("no-progress", false, "do not draw progress bars on stderr")
	return ci
}

// importReport is a package's import report as the command shows it.
type importReport struct {
	summary      string
	rejected     int      // lines in the rejects file
	errors       []string // every bad line: line, column, reason
	writeRejects func(io.Writer) error
}

// importFunc imports what r reads into d; progress is nil with --no-progress.
// It returns the package's report (nil if nothing was read) and its error.
type importFunc func(ctx context.Context, d *database, r io.Reader, progress *cliProgress) (*importReport, error)

// run imports the one file args name with imp.
func (ci *csvImport) run(ctx context.Context, env *Env, args []string, imp importFunc) error {
	if len(args) != 1 {
		return &ExitError{Code: 2, Err: errors.New("give exactly one CSV file")}
	}
	file := args[0]
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	rejectsPath := *ci.rejects
	if rejectsPath == "" {
		rejectsPath = file + ".rejects.csv"
	}
	d, err := ci.df.open(ctx, env)
	if err != nil {
		return err
	}
	defer d.Close(ctx)

	var r io.Reader = bufio.NewReaderSize(f, 256<<10)
	var bars *cliProgress
	if !*ci.noProgress {
		bars = &cliProgress{w: env.Stderr}
		if st, err := f.Stat(); err == nil {
			bars.bytes = progressbar.NewOptions64(st.Size(), barOptions(env.Stderr, "read")...)
			r = io.TeeReader(r, bars.bytes)
		}
	}
	rep, err := imp(ctx, d, r, bars)
	if rep != nil && rep.rejected > 0 {
		if werr := writeFile(rejectsPath, rep.writeRejects); werr != nil {
			return werr
		}
	}
	if err != nil {
		ae, ok := apperr.As(err)
		if !ok || ae.Code != apperr.Invalid {
			return err
		}
		if rep == nil { // the header or the options: nothing was read
			fmt.Fprintln(env.Stderr, ae.Message)
			return &ExitError{Code: 1, Err: errors.New("import rejected, nothing written")}
		}
		for _, e := range rep.errors {
			fmt.Fprintln(env.Stderr, e)
		}
		fmt.Fprint(env.Stdout, rep.summary)
		fmt.Fprintf(env.Stderr, "the bad lines are in %s\n", rejectsPath)
		return &ExitError{Code: 1, Err: fmt.Errorf("import rejected: %d bad lines, nothing written", len(rep.errors))}
	}
	fmt.Fprint(env.Stdout, rep.summary)
	if rep.rejected > 0 {
		for _, e := range rep.errors {
			fmt.Fprintln(env.Stderr, e)
		}
		fmt.Fprintf(env.Stderr, "%d lines rejected (with their %s), written to %s\n", rep.rejected, ci.unit, rejectsPath)
	}
	return nil
}

// writeFile writes path (owner only: rejects hold personal data) with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rowErrors is the lines of a report's row errors.
func rowErrors[E fmt.Stringer](errs []E) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.String()
	}
	return out
}
