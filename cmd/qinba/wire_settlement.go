package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/settlement"
)

// householdTotals fills the year's totals per fund on GET /households/{id}
// (household.Handler.Totals); the household wiring sets it.
var householdTotals household.TotalsFunc = settlement.HouseholdTotals

// policyDirHelp explains --policy-dir.
const policyDirHelp = "directory of extra settlement policy files (*.json, the format of baokang-2019.json) besides the embedded ones (env QINBA_POLICY_DIR)"

// loadPolicies returns the embedded policies and those of dir.
func loadPolicies(dir string) (*settlement.Registry, error) {
	reg, err := settlement.LoadRegistry(dir)
	if err != nil {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("policies: %w", err)}
	}
	return reg, nil
}

func init() {
	registerMount(mount{name: "settlement", order: 50, fn: func(a *App) error {
		reg, err := settlement.LoadRegistry(a.Config.PolicyDir)
		if err != nil {
			return fmt.Errorf("settlement policies: %w", err)
		}
		svc := settlement.NewService(a.Pool, a.Log, reg)
		settlement.NewHandler(svc).Routes(a.API)
		return a.AddOpenAPI(settlement.OpenAPI)
	}})

	registerSeed(seedStep{name: "settlements", order: 40, fn: seedSettlements})

	register(&command{
		name: "settle-cases",
		summary: "Settle the conformance cases of settlement/SPEC.md: the input document on stdin, the output on stdout.\n" +
			"An invalid case gets an error and the others are still settled; the exit status is 0 when the input parses.",
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			policyFile := fs.String("policy", "", "policy file (JSON, the format of baokang-2019.json); empty uses the embedded reference policy "+settlement.ReferencePolicyID)
			return func(ctx context.Context, _ []string) error {
				p := settlement.ReferencePolicy()
				if *policyFile != "" {
					var err error
					if p, err = settlement.LoadPolicyFile(*policyFile); err != nil {
						return &ExitError{Code: 2, Err: fmt.Errorf("policy %s: %w", *policyFile, err)}
					}
				}
				if err := settlement.RunCases(p, env.Stdin, env.Stdout); err != nil {
					return &ExitError{Code: 1, Err: err}
				}
				return nil
			}
		},
	})

	register(&command{
		name: "import bills",
		args: "FILE.csv",
		summary: `Load bills from a CSV (UTF-8): one row per line item, the bill-level columns repeated on
every row of a bill. Header:
  external_no,facility_code,person_id,national_id,kind,admitted_on,discharged_on,visit_on,emergency,
  referral_id,item_code,item_name,class,quantity,unit_price,amount
external_no: the facility's bill number (required; a bill is facility_code + external_no);
person_id or national_id: the patient; kind: inpatient|outpatient; inpatient: admitted_on and
discharged_on (the bill's date), emergency true|false, referral_id (an accepted referral of the
patient to this facility) or empty; outpatient: visit_on (the bill's date); dates YYYY-MM-DD;
class: A|B|C; quantity: up to 3 decimals; unit_price: yuan, up to 4 decimals; amount: yuan,
= round2(quantity × unit_price), empty to compute it.
All or nothing by default: every bad line is printed (line, column, reason) and nothing is written.
With --skip-invalid the good bills are written and the bad ones (a bill with any bad line is
rejected whole) go to the rejects file. Re-importing the same file changes nothing; a changed bill
is corrected while it is not settled (a settled bill must be reversed first).`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			ci := newCSVImport(fs, env, "bills")
			policyDir := fs.String("policy-dir", env.Getenv("QINBA_POLICY_DIR"), policyDirHelp)
			return func(ctx context.Context, args []string) error {
				return ci.run(ctx, env, args, func(ctx context.Context, d *database, r io.Reader, bars *cliProgress) (*importReport, error) {
					reg, err := loadPolicies(*policyDir)
					if err != nil {
						return nil, err
					}
					svc := settlement.NewService(d.Pool, nil, reg)
					svc.Actor = "cli"
					opts := settlement.ImportOptions{SkipInvalid: *ci.skip}
					if bars != nil {
						opts.Progress = bars
					}
					rep, err := svc.ImportBills(cliContext(ctx, env), nil, r, opts)
					if rep == nil {
						return nil, err
					}
					return &importReport{summary: rep.Summary(), rejected: rep.Rejected(), errors: rowErrors(rep.Errors), writeRejects: rep.WriteRejects}, err
				})
			}
		},
	})

	register(&command{
		name: "settle",
		summary: `With --pending: settle every open bill (recorded, never settled), each person's bills in date
order, persons in parallel; the results are those of settling the bills one by one. A bill the
policy refuses is reported and the person's later bills are left open. Reversed bills wait for
a clerk. A progress bar is drawn on stderr.`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			pending := fs.Bool("pending", false, "settle every open bill (required: the only mode)")
			workers := fs.Int("workers", 4, "persons settled in parallel (each in its own transaction and connection)")
			batch := fs.Int("batch", 100, "about how many bills one transaction settles")
			noProgress := fs.Bool("no-progress", false, "do not draw the progress bar")
			policyDir := fs.String("policy-dir", env.Getenv("QINBA_POLICY_DIR"), policyDirHelp)
			return func(ctx context.Context, args []string) error {
				if !*pending || len(args) != 0 {
					return &ExitError{Code: 2, Err: errors.New("say what to settle: --pending")}
				}
				if *workers < 1 || *workers > 64 || *batch < 1 {
					return &ExitError{Code: 2, Err: errors.New("--workers must be 1 to 64 and --batch at least 1")}
				}
				reg, err := loadPolicies(*policyDir)
				if err != nil {
					return err
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				svc := settlement.NewService(d.Pool, nil, reg)
				svc.Actor = "cli"
				opts := settlement.PendingOptions{Workers: *workers, Batch: *batch}
				var bar *progressbar.ProgressBar
				if !*noProgress {
					opts.Progress = func(done, total int64) {
						if bar == nil {
							bar = progressbar.NewOptions64(total, barOptions(env.Stderr, "settle")...)
						}
						_ = bar.Set64(done)
					}
				}
				start := time.Now()
				rep, err := svc.SettlePending(cliContext(ctx, env), opts)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					return err
				}
				el := time.Since(start)
				fmt.Fprintf(env.Stdout, "settled %d of %d open bills (%d persons) in %s (%.0f bills/s); %d refused, %d left open after them, %d settled meanwhile by others\n",
					rep.Settled, rep.Bills, rep.Persons, el.Round(time.Millisecond), float64(rep.Settled)/el.Seconds(), len(rep.Failed), rep.Skipped, rep.Raced)
				for _, f := range rep.Failed {
					fmt.Fprintf(env.Stderr, "bill %d (person %d): %s\n", f.BillID, f.PersonID, f.Reason)
				}
				if len(rep.Failed) > 0 {
					return &ExitError{Code: 1, Err: fmt.Errorf("%d bills could not be settled", len(rep.Failed))}
				}
				return nil
			}
		},
	})

	register(&command{
		name: "clearing",
		summary: `Run the monthly clearing: for each facility and each fund, what the fund owes for the month
(settlements minus reversals posted in the month), with counts. The run is recorded; a facility
is cleared once per month (exit 1 when it already is). Without --facility, every facility with
postings in the month that is not cleared yet.`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			period := fs.String("period", "", "the month, YYYY-MM (required; it must be over)")
			facility := fs.String("facility", "", "clear only this facility")
			csvOut := fs.String("csv", "", "also write the run as CSV to this file")
			return func(ctx context.Context, args []string) error {
				if len(args) != 0 || *period == "" {
					return &ExitError{Code: 2, Err: errors.New("give --period YYYY-MM")}
				}
				month, err := settlement.ParsePeriod(*period)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--period %q: a month written YYYY-MM", *period)}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				reg, err := settlement.NewRegistry()
				if err != nil {
					return err
				}
				svc := settlement.NewService(d.Pool, nil, reg)
				svc.Actor = "cli"
				run, err := svc.RunClearing(cliContext(ctx, env), nil, month, *facility)
				if err != nil {
					if ae, ok := apperr.As(err); ok && ae.Code != apperr.Internal {
						return &ExitError{Code: 1, Err: errors.New(ae.Message)}
					}
					return err
				}
				fmt.Fprint(env.Stdout, run.Text())
				if *csvOut != "" {
					f, err := os.Create(*csvOut)
					if err != nil {
						return err
					}
					if err := run.WriteCSV(f); err != nil {
						f.Close()
						return err
					}
					return f.Close()
				}
				return nil
			}
		},
	})

	register(&command{
		name: "verify",
		summary: `Prove the settlement books consistent: every journal entry and the whole journal balance, the
journal's totals per fund equal the settlements', every bill's status agrees with its
settlements, and replaying every settlement and reversal through the engine (stored input, stored
policy) gives each stored split and the stored accumulators. Exits 1 naming the first mismatch.`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			return func(ctx context.Context, args []string) error {
				if len(args) != 0 {
					return &ExitError{Code: 2, Err: errors.New("verify takes no arguments")}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				start := time.Now()
				st, err := settlement.VerifyWithStats(ctx, d.Pool)
				if err != nil {
					if settlement.IsVerifyError(err) {
						fmt.Fprintln(env.Stdout, "MISMATCH:", err)
						return &ExitError{Code: 1, Err: err}
					}
					return err
				}
				fmt.Fprintf(env.Stdout, "ok: %d journal entries (%d lines) balance, debits = credits = %s; %d settlements and %d reversals "+
					"replay exactly over %d person-years; %d accumulator rows match (%s)\n",
					st.JournalEntries, st.JournalLines, settlement.FormatMoney(st.Debits), st.Settlements, st.Reversals, st.PersonYears,
					st.Accumulators, time.Since(start).Round(time.Millisecond))
				return nil
			}
		},
	})

	register(&command{
		name: "gen bills",
		summary: `Write a generated year of bills in the import format (see qinba import bills -h) for the persons
in the database (load a roster first): about two thirds outpatient visits at the village clinic
or township health centre, one third inpatient stays at the township or a county hospital, with
realistic items and prices; dates up to today. The same --seed and database give the same file.`,
		setup: func(fs *flag.FlagSet, env *Env) func(context.Context, []string) error {
			var df dbFlags
			df.register(fs, env)
			count := fs.Int("count", 100000, "number of bills")
			year := fs.Int("year", time.Now().Year()-1, "the bills' year")
			out := fs.String("out", "", "output file (default stdout)")
			seed := fs.Int64("seed", 1, "random seed")
			return func(ctx context.Context, args []string) error {
				if len(args) != 0 || *count < 1 || *year < 2000 || *year > 2100 {
					return &ExitError{Code: 2, Err: errors.New("gen bills takes no arguments; --count >= 1, --year 2000 to 2100")}
				}
				d, err := df.open(ctx, env)
				if err != nil {
					return err
				}
				defer d.Close(ctx)
				persons, err := settlement.LoadGenPersons(ctx, d.Pool)
				if err != nil {
					return err
				}
				w := env.Stdout
				var f *os.File
				if *out != "" {
					if f, err = os.Create(*out); err != nil {
						return err
					}
					defer f.Close()
					w = f
				}
				if err := settlement.GenerateBills(w, *seed, *count, *year, persons, time.Now()); err != nil {
					return &ExitError{Code: 1, Err: err}
				}
				if f != nil {
					return f.Close()
				}
				return nil
			}
		},
	})
}

// demoBills is how many bills the demo seed settles.
const demoBills = 400

// seedSettlements gives the demo a settled year: the demo roster enrolled
// in the reference policy's year, a generated year of bills imported and
// settled in date order, so that bills, statements, household totals, the
// clearing and `qinba verify` have a real ledger to show. Seeding again
// changes nothing (the roster and the bills are the same; nothing is left
// to settle).
func seedSettlements(ctx context.Context, env *Env, d *database) error {
	reg, err := settlement.NewRegistry()
	if err != nil {
		return err
	}
	year := settlement.ReferencePolicy().ValidFrom().Year()
	if _, err := household.Import(ctx, d.Pool, bytes.NewReader(demoRoster()), household.Options{Year: year, Actor: "seed"}); err != nil {
		return fmt.Errorf("demo roster for %d: %w", year, err)
	}
	persons, err := settlement.LoadGenPersons(ctx, d.Pool)
	if err != nil {
		return err
	}
	var bills bytes.Buffer
	if err := settlement.GenerateBills(&bills, 1, demoBills, year, persons, time.Now()); err != nil {
		return err
	}
	svc := settlement.NewService(d.Pool, nil, reg)
	svc.Actor = "seed"
	imp, err := svc.ImportBills(ctx, nil, &bills, settlement.ImportOptions{})
	if err != nil {
		return fmt.Errorf("demo bills: %w", err)
	}
	rep, err := svc.SettlePending(ctx, settlement.PendingOptions{})
	if err != nil {
		return err
	}
	if len(rep.Failed) > 0 {
		return fmt.Errorf("demo bills: %d could not be settled (first: bill %d: %s)", len(rep.Failed), rep.Failed[0].BillID, rep.Failed[0].Reason)
	}
	fmt.Fprintf(env.Stdout, "bills %d: %d added, %d unchanged; %d settled\n", year, imp.Bills.Added, imp.Bills.Unchanged, rep.Settled)
	return nil
}
