package household

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Progress is told how an import advances; the CLI draws it as progress
// bars. Phases run one after the other: "read" (rows parsed and checked),
// "copy" (new households, persons and enrolments COPYed into their
// tables) and "write" (the updates of changed rows: households, persons,
// enrolments).
type Progress interface {
	// Phase starts a phase of total steps (-1 when unknown).
	Phase(name string, total int64)
	// Set reports that the current phase has done steps in all.
	Set(done int64)
	// Done ends the current phase.
	Done()
}

type noProgress struct{}

func (noProgress) Phase(string, int64) {}
func (noProgress) Set(int64)           {}
func (noProgress) Done()               {}

// Options tune Import.
type Options struct {
	// Year is the roster year the insured column applies to; 0 means the
	// current year (China time).
	Year int
	// SkipInvalid writes the good households and rejects the bad ones
	// (a household with any bad line is rejected whole). Without it any bad
	// line rejects the whole file and nothing is written.
	SkipInvalid bool
	// Progress, if set, is told how the import advances.
	Progress Progress
	// Actor names the importer in the audit log when the context carries
	// no principal (the CLI).
	Actor string
}

// Counts is what an import did to households or to persons.
type Counts struct {
	Added     int `json:"added"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Rejected  int `json:"rejected"`
}

// Report is the outcome of an import: the summary and every bad line.
type Report struct {
	Year int `json:"year"`
	// Rows is the number of data lines read.
	Rows int `json:"rows"`
	// Written is false when nothing was written (bad lines without
	// SkipInvalid): only the Rejected counts are then filled in.
	Written    bool       `json:"written"`
	Households Counts     `json:"households"`
	Persons    Counts     `json:"persons"`
	Errors     []RowError `json:"errors"`

	rejects []reject
}

// reject is a line that was not written, with why.
type reject struct {
	row     *Row
	columns []string
	reasons []string
}

// Summary is the report's counts as the CLI prints them.
func (r *Report) Summary() string {
	var b strings.Builder
	if !r.Written {
		fmt.Fprintf(&b, "roster %d: REJECTED, nothing written (%d bad lines)\n", r.Year, len(r.Errors))
	} else {
		fmt.Fprintf(&b, "roster %d: %d lines\n", r.Year, r.Rows)
	}
	line := func(what string, c Counts) {
		fmt.Fprintf(&b, "%-10s %7d added %7d updated %7d unchanged %7d rejected\n", what, c.Added, c.Updated, c.Unchanged, c.Rejected)
	}
	line("households", r.Households)
	line("persons", r.Persons)
	return b.String()
}

// ImportError is returned (in an apperr Invalid) when bad lines reject the
// whole file. Report lists them.
type ImportError struct{ Report *Report }

func (e *ImportError) Error() string {
	return fmt.Sprintf("%d bad lines, nothing written", len(e.Report.Errors))
}

// RejectsHeader is the header of the rejects file: the roster's columns
// then where and why.
var RejectsHeader = append(slices.Clone(RosterHeader), "line", "column", "reason")

// WriteRejects writes the lines that were not written as a CSV: the
// original columns, then line, column and reason. A line with several
// problems names them all, separated by "; ". It is a copy of the input
// file's lines (full identity numbers included) for the clerk to fix and
// re-import; it is never logged or served.
func (r *Report) WriteRejects(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(RejectsHeader); err != nil {
		return err
	}
	rec := make([]string, 0, len(RejectsHeader))
	for _, rj := range r.rejects {
		rec = rec[:0]
		if rj.row.Raw != nil {
			raw := rj.row.Raw
			for i := range numCols {
				if i < len(raw) {
					rec = append(rec, raw[i])
				} else {
					rec = append(rec, "")
				}
			}
			if len(raw) > numCols {
				// Keep the extra fields visible in the last column.
				rec[numCols-1] = strings.Join(raw[numCols-1:], ",")
			}
		} else {
			rec = append(rec, rj.row.Fields[:]...)
		}
		rec = append(rec, strconv.Itoa(rj.row.Line), strings.Join(rj.columns, ";"), strings.Join(rj.reasons, "; "))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Rejected is the number of lines not written.
func (r *Report) Rejected() int { return len(r.rejects) }

// CurrentYear is the current year in China.
func CurrentYear() int { return time.Now().In(china).Year() }

// Import loads a roster CSV (see RosterHeader) into the household, person
// and person_insurance tables in one transaction. Every line is checked
// (ParseRoster, then against the stored persons: an identity number
// already in another household, a stored head who is not in the file).
// Without opts.SkipInvalid any bad line rejects the file: the report lists
// every bad line and the error is an apperr Invalid wrapping *ImportError.
// With it, households with a bad line are rejected whole (see
// Report.WriteRejects) and the others are written.
//
// Under a table lock, the stored households and persons the file names are
// read and compared with the file's: new rows are COPYed straight into the
// tables (persons with ids drawn from the identity sequence, so their
// enrolments go in the same way), changed rows are updated set-wise, and a
// row equal to what is stored is not touched, so re-importing a file
// changes nothing. Imports are serialised by the lock; readers are not
// blocked. One audit entry records the import and its counts (import, or
// import_rejected).
func Import(ctx context.Context, d DB, r io.Reader, opts Options) (*Report, error) {
	if opts.Year == 0 {
		opts.Year = CurrentYear()
	}
	if opts.Year < 2000 || opts.Year > 2100 {
		return nil, apperr.Field("year", "must be from 2000 to 2100")
	}
	prog := opts.Progress
	if prog == nil {
		prog = noProgress{}
	}
	// Parse and check the file before taking any lock: a slow upload must
	// not hold up other imports.
	villages, err := loadVillages(ctx, d)
	if err != nil {
		return nil, err
	}
	prog.Phase("read", -1)
	ro, err := ParseRoster(r, villages, time.Now(), func(n int) { prog.Set(int64(n)) })
	prog.Done()
	if err != nil {
		return nil, err
	}
	rep := &Report{Year: opts.Year, Rows: len(ro.Rows), Errors: []RowError{}}
	err = db.WithTx(ctx, d, func(tx pgx.Tx) error {
		// One import at a time; readers go on (SHARE ROW EXCLUSIVE
		// conflicts with itself and with writers only).
		if _, err := tx.Exec(ctx, `LOCK TABLE household, person, person_insurance IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		stored, err := loadStored(ctx, tx, ro, opts.Year)
		if err != nil {
			return err
		}
		errs := ro.Errors
		if dbErrs := stored.check(ro); len(dbErrs) > 0 {
			errs = append(slices.Clone(errs), dbErrs...)
			sortErrors(errs)
		}
		if errs != nil {
			rep.Errors = errs
		}
		rejected := rejectLines(rep, ro)
		if len(rep.Errors) > 0 && !opts.SkipInvalid {
			return &ImportError{Report: rep}
		}
		if err := write(ctx, tx, stored.plan(ro, rejected, rep), opts.Year, prog); err != nil {
			return err
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: "import", RecordType: "household", Username: actor(ctx, opts.Actor),
			Detail: map[string]any{"year": rep.Year, "rows": rep.Rows, "households": rep.Households, "persons": rep.Persons,
				"skip_invalid": opts.SkipInvalid}})
	})
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			prog.Done()
			// The attempt is on record even though nothing was written.
			if aerr := auth.Audit(ctx, d, auth.Entry{Action: "import_rejected", RecordType: "household", Username: actor(ctx, opts.Actor),
				Detail: map[string]any{"year": rep.Year, "rows": rep.Rows, "bad_lines": len(rep.Errors),
					"households_rejected": rep.Households.Rejected, "persons_rejected": rep.Persons.Rejected}}); aerr != nil {
				return nil, aerr
			}
			return rep, &apperr.Error{Code: apperr.Invalid, Message: ie.Error(), Err: ie}
		}
		return nil, err
	}
	rep.Written = true
	return rep, nil
}

// DB is what Import needs: a pool (or a transaction, whose Begin makes a
// savepoint).
type DB interface {
	db.DBTX
	db.TxBeginner
}

func actor(ctx context.Context, name string) string {
	if auth.PrincipalFrom(ctx) != nil {
		return ""
	}
	return name
}

func loadVillages(ctx context.Context, d db.DBTX) (Villages, error) {
	rows, err := d.Query(ctx, `SELECT code, tier FROM facility`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	v := Villages{}
	for rows.Next() {
		var code string
		var tier facility.Tier
		if err := rows.Scan(&code, &tier); err != nil {
			return nil, err
		}
		v[code] = tier
	}
	return v, rows.Err()
}

// rejectLines decides which lines are not written: every bad line, and
// every line of a household with a bad line (so "exactly one head" holds).
// It fills rep.rejects and the Rejected counts and returns the rejected
// households.
func rejectLines(rep *Report, ro *Roster) map[string]bool {
	if len(rep.Errors) == 0 {
		return nil
	}
	byLine := map[int][]RowError{}
	for _, e := range rep.Errors {
		byLine[e.Line] = append(byLine[e.Line], e)
	}
	rejected := map[int]bool{} // row index
	ids := map[string]bool{}
	for _, h := range ro.Households {
		firstBad := 0
		for _, i := range h.Rows {
			if len(byLine[ro.Rows[i].Line]) > 0 {
				firstBad = ro.Rows[i].Line
				break
			}
		}
		if firstBad == 0 {
			continue
		}
		ids[h.ID] = true
		rep.Households.Rejected++
		for _, i := range h.Rows {
			rejected[i] = true
			if len(byLine[ro.Rows[i].Line]) == 0 {
				byLine[ro.Rows[i].Line] = []RowError{{Line: ro.Rows[i].Line, Column: "household_id",
					Reason: fmt.Sprintf("household %s is rejected whole: line %d is bad", h.ID, firstBad)}}
			}
		}
	}
	for i, row := range ro.Rows {
		es := byLine[row.Line]
		if len(es) == 0 && !rejected[i] {
			continue
		}
		rj := reject{row: row}
		for _, e := range es {
			rj.columns = append(rj.columns, e.Column)
			rj.reasons = append(rj.reasons, e.Reason)
		}
		rep.rejects = append(rep.rejects, rj)
	}
	rep.Persons.Rejected = len(rep.rejects)
	return ids
}
