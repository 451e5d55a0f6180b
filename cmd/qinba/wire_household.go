package main

import (
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
			ci := newCSVImport(fs, env, "households")
			year := fs.Int("year", household.CurrentYear(), "roster year the insured column applies to")
			return func(ctx context.Context, args []string) error {
				return ci.run(ctx, env, args, func(ctx context.Context, d *database, r io.Reader, bars *cliProgress) (*importReport, error) {
					opts := household.Options{Year: *year, SkipInvalid: *ci.skip, Actor: "cli"}
					if bars != nil {
						opts.Progress = bars
					}
					rep, err := household.Import(ctx, d.Pool, r, opts)
					if rep == nil {
						return nil, err
					}
					return &importReport{summary: rep.Summary(), rejected: rep.Rejected(), errors: rowErrors(rep.Errors), writeRejects: rep.WriteRejects}, err
				})
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
