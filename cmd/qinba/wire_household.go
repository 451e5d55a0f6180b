package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
)

func init() {
	registerMount(mount{name: "household", order: 30, fn: func(a *App) error {
		h := household.NewHandler(a.Pool, a.Log)
		// The year's totals per fund on GET /households/{id}, from the
		// settlement package (wire_settlement.go).
		h.Totals = householdTotals
		h.Routes(a.API)
		return a.AddOpenAPI(household.OpenAPI)
	}})
	registerSeed(seedStep{name: "households", order: 30, fn: func(ctx context.Context, env *Env, d *database) error {
		rep, err := household.Import(ctx, d.Pool, bytes.NewReader(demoRoster()), household.Options{Actor: "seed"})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "households: %d added, %d updated, %d unchanged; persons: %d added, %d updated, %d unchanged\n",
			rep.Households.Added, rep.Households.Updated, rep.Households.Unchanged, rep.Persons.Added, rep.Persons.Updated, rep.Persons.Unchanged)
		return nil
	}})
	register(&command{
		name: "import roster",
		args: "FILE.csv",
		summary: `Load or update the household roster from a CSV (UTF-8, header
household_id,national_id,name,relation,village_code,category,insured).
relation: head|spouse|child|parent|grandchild|other; category: registered_poor|dibao|tekun|none;
insured: true|false (enrolment in the --year roster year); village_code: a village clinic's code.
All or nothing by default: every bad line is printed (line, column, reason) and nothing is written.
With --skip-invalid the good households are written and the bad ones (a household with any bad
line is rejected whole) go to the rejects file. Re-importing the same file changes nothing.`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			skip := fs.Bool("skip-invalid", false, "write the good households and put the bad lines in the rejects file, instead of rejecting the whole file")
			rejects := fs.String("rejects", "", "where to write the rejected lines with their reasons (default FILE.rejects.csv); written only when lines are rejected")
			year := fs.Int("year", household.CurrentYear(), "roster year the insured column applies to")
			noProgress := fs.Bool("no-progress", false, "do not draw progress bars on stderr")
			return func(ctx context.Context, args []string) error {
				// Flags may also follow the file: qinba import roster FILE.csv --skip-invalid.
				var files []string
				for len(args) > 0 {
					files = append(files, args[0])
					if err := fs.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
						return nil
					} else if err != nil {
						return &ExitError{Code: 2, Err: err}
					}
					args = fs.Args()
				}
				if len(files) != 1 {
					return &ExitError{Code: 2, Err: errors.New("give exactly one CSV file")}
				}
				args = files
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				rejectsPath := *rejects
				if rejectsPath == "" {
					rejectsPath = args[0] + ".rejects.csv"
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				var r io.Reader = bufio.NewReaderSize(f, 256<<10)
				opts := household.Options{Year: *year, SkipInvalid: *skip, Actor: "cli"}
				if !*noProgress {
					bars := &cliProgress{w: env.Stderr}
					if st, err := f.Stat(); err == nil {
						bars.bytes = progressbar.NewOptions64(st.Size(), barOptions(env.Stderr, "read")...)
						r = io.TeeReader(r, bars.bytes)
					}
					opts.Progress = bars
				}
				rep, err := household.Import(ctx, d.Pool, r, opts)
				if rep != nil && rep.Rejected() > 0 {
					if werr := writeRejects(rejectsPath, rep); werr != nil {
						return werr
					}
				}
				if err != nil {
					ae, ok := apperr.As(err)
					if !ok || ae.Code != apperr.Invalid {
						return err
					}
					if rep == nil { // the header or the year: nothing was read
						fmt.Fprintln(env.Stderr, ae.Message)
						return &ExitError{Code: 1, Err: errors.New("import rejected, nothing written")}
					}
					for _, e := range rep.Errors {
						fmt.Fprintln(env.Stderr, e.String())
					}
					fmt.Fprint(env.Stdout, rep.Summary())
					fmt.Fprintf(env.Stderr, "the bad lines are in %s\n", rejectsPath)
					return &ExitError{Code: 1, Err: fmt.Errorf("import rejected: %d bad lines, nothing written", len(rep.Errors))}
				}
				fmt.Fprint(env.Stdout, rep.Summary())
				if rep.Rejected() > 0 {
					for _, e := range rep.Errors {
						fmt.Fprintln(env.Stderr, e.String())
					}
					fmt.Fprintf(env.Stderr, "%d lines rejected (with their households), written to %s\n", rep.Rejected(), rejectsPath)
				}
				return nil
			}
		},
	})
	register(&command{
		name:    "households stats",
		summary: "Print the number of households and persons per poverty category.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, _ []string) error {
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				st, err := household.NewStore().Stats(ctx, d.Pool)
				if err != nil {
					return err
				}
				fmt.Fprint(env.Stdout, household.FormatStats(st))
				return nil
			}
		},
	})
	register(&command{
		name: "gen roster",
		summary: `Write a generated, realistic household roster CSV (valid identity numbers, one head per
household, a mix of categories) over the demo county's villages, for tests and benchmarks.
The same --seed gives the same file.`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			households := fs.Int("households", household.FullCountyHouseholds, "number of households")
			persons := fs.Int("persons", household.FullCountyPersons, "number of persons (1 to 8 per household); 0 scales with --households")
			out := fs.String("out", "", "output file (default stdout)")
			seed := fs.Int64("seed", 1, "random seed")
			return func(ctx context.Context, args []string) error {
				if len(args) != 0 {
					return &ExitError{Code: 2, Err: errors.New("gen roster takes no arguments")}
				}
				w := env.Stdout
				if *out != "" {
					f, err := os.Create(*out)
					if err != nil {
						return err
					}
					defer f.Close()
					w = f
				}
				n := *persons
				if n == 0 {
					n = *households * household.FullCountyPersons / household.FullCountyHouseholds
				}
				if err := household.GenerateRosterSize(w, *seed, *households, max(n, *households), demoVillages()); err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				if f, ok := w.(*os.File); ok && *out != "" {
					return f.Close()
				}
				return nil
			}
		},
	})
}

// demoHouseholds is the size of the demo roster `qinba seed --demo` loads.
const demoHouseholds = 600

// demoRoster is the demo roster: demoHouseholds households, the demo
// village doctor's village with about 60 of them (the others 2 each), so
// that the demo has patients to find. The same every time (made once; the
// households and settlements seed steps both load it).
var demoRoster = sync.OnceValue(func() []byte {
	villages := demoVillages()
	for range 30 {
		villages = append(villages, "V420626-001")
	}
	var buf bytes.Buffer
	if err := household.GenerateRoster(&buf, 1, demoHouseholds, villages); err != nil {
		panic("demo roster: " + err.Error())
	}
	return buf.Bytes()
})

// demoVillages lists the village codes of the demo county.
func demoVillages() []string {
	r := csv.NewReader(bytes.NewReader(facility.DemoCSV))
	recs, err := r.ReadAll()
	if err != nil {
		panic("facility.DemoCSV: " + err.Error())
	}
	var out []string
	for _, rec := range recs[1:] {
		if len(rec) > 2 && rec[2] == string(facility.Village) {
			out = append(out, rec[0])
		}
	}
	return out
}

func writeRejects(path string, rep *household.Report) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := rep.WriteRejects(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func barOptions(w io.Writer, desc string) []progressbar.Option {
	return []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-6s", desc)),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	}
}

// cliProgress draws an import's phases as progress bars: bytes read (the
// parse and the checks run as the file is read), rows copied, then the
// database steps.
type cliProgress struct {
	w     io.Writer
	bytes *progressbar.ProgressBar // set up by the caller on the file
	cur   *progressbar.ProgressBar
}

func (p *cliProgress) Phase(name string, total int64) {
	p.Done()
	if name == "read" && p.bytes != nil {
		p.cur = p.bytes
		return
	}
	p.cur = progressbar.NewOptions64(total, barOptions(p.w, name)...)
}

func (p *cliProgress) Set(done int64) {
	if p.cur != nil && p.cur != p.bytes {
		_ = p.cur.Set64(done)
	}
}

func (p *cliProgress) Done() {
	if p.cur != nil {
		_ = p.cur.Finish()
		p.cur = nil
	}
}
