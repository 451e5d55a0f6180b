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
// "copy" (rows copied to the staging table) and "write" (the database
// steps: check against stored persons, households, persons with their
// enrolment).
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
// Rows are COPYed into staging tables, then households, persons and the
// year's enrolment are upserted set-wise; a row equal to what is stored is
// not touched, so re-importing a file changes nothing. Imports are
// serialised by a table lock; readers are not blocked. One audit entry
// records the import and its counts (import, or import_rejected).
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
		// Room for the joins and the classified rows of a full county.
		if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
			return err
		}
		if err := stage(ctx, tx, ro, prog); err != nil {
			return err
		}
		prog.Phase("write", 3)
		dbErrs, err := checkStored(ctx, tx)
		if err != nil {
			return err
		}
		prog.Set(1)
		errs := ro.Errors
		if len(dbErrs) > 0 {
			errs = append(slices.Clone(errs), dbErrs...)
			sortErrors(errs)
		}
		if errs != nil {
			rep.Errors = errs
		}
		rejectedHH := rejectLines(rep, ro)
		if len(rep.Errors) > 0 && !opts.SkipInvalid {
			return &ImportError{Report: rep}
		}
		if len(rejectedHH) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM roster_person WHERE household_id = ANY($1)`, rejectedHH); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM roster_household WHERE id = ANY($1)`, rejectedHH); err != nil {
				return err
			}
		}
		if err := upsert(ctx, tx, rep, opts.Year, prog); err != nil {
			return err
		}
		prog.Done()
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

// stage COPYs the rows that passed their own checks, and the households of
// the file, into temporary tables dropped at commit.
func stage(ctx context.Context, tx pgx.Tx, ro *Roster, prog Progress) error {
	// Identifiers collate as in the stored tables ("C"), so the joins
	// compare them the same way.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE roster_person (
			line int NOT NULL, household_id text COLLATE "C" NOT NULL, national_id text COLLATE "C" NOT NULL,
			name text NOT NULL, relation text NOT NULL, insured boolean NOT NULL) ON COMMIT DROP;
		CREATE TEMP TABLE roster_household (
			id text COLLATE "C" NOT NULL, line int NOT NULL, village_code text NOT NULL, category text NOT NULL) ON COMMIT DROP`); err != nil {
		return err
	}
	prog.Phase("copy", int64(len(ro.Rows)))
	i, n := 0, 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		for ; i < len(ro.Rows); i++ {
			row := ro.Rows[i]
			if !row.OK {
				continue
			}
			i++
			if n++; n%4096 == 0 {
				prog.Set(int64(i))
			}
			return []any{int32(row.Line), row.HouseholdID(), row.NationalID(), row.Name(), string(row.Relation()), row.Insured}, nil
		}
		return nil, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"roster_person"},
		[]string{"line", "household_id", "national_id", "name", "relation", "insured"}, src); err != nil {
		return fmt.Errorf("copy roster rows: %w", err)
	}
	prog.Set(int64(len(ro.Rows)))
	prog.Done()
	hh := make([][]any, 0, len(ro.Households))
	for _, h := range ro.Households {
		hh = append(hh, []any{h.ID, int32(h.Line), h.VillageCode, string(h.Category)})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"roster_household"},
		[]string{"id", "line", "village_code", "category"}, pgx.CopyFromRows(hh)); err != nil {
		return fmt.Errorf("copy roster households: %w", err)
	}
	return nil
}

// checkStored finds the lines that clash with stored persons: a person in
// another household, and a stored head who is not in the file (the
// household would have two).
func checkStored(ctx context.Context, tx pgx.Tx) ([]RowError, error) {
	rows, err := tx.Query(ctx, `
		SELECT s.line, 'national_id', 'this person is already in household ' || p.household_id
		FROM roster_person s JOIN person p ON p.national_id = s.national_id
		WHERE p.household_id <> s.household_id
		UNION ALL
		SELECT h.line, 'relation', 'household ' || h.id || ' already has a head on record (' ||
			left(p.national_id, 6) || '********' || right(p.national_id, 4) ||
			') who is not in this file; list every member with their relation'
		FROM roster_household h JOIN person p ON p.household_id = h.id AND p.relation = 'head'
		WHERE NOT EXISTS (SELECT 1 FROM roster_person s WHERE s.national_id = p.national_id AND s.household_id = h.id)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RowError
	for rows.Next() {
		var e RowError
		if err := rows.Scan(&e.Line, &e.Column, &e.Reason); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// rejectLines decides which lines are not written: every bad line, and
// every line of a household with a bad line (so "exactly one head" holds).
// It fills rep.rejects and the Rejected counts and returns the rejected
// household ids.
func rejectLines(rep *Report, ro *Roster) []string {
	if len(rep.Errors) == 0 {
		return nil
	}
	byLine := map[int][]RowError{}
	for _, e := range rep.Errors {
		byLine[e.Line] = append(byLine[e.Line], e)
	}
	rejected := map[int]bool{} // row index
	var ids []string
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
		ids = append(ids, h.ID)
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

// upsert writes the staged households, persons and enrolments. Each
// table gets one INSERT ... ON CONFLICT DO UPDATE fed only with the staged
// rows that are new or differ from the stored ones (the table lock keeps
// that comparison true until commit), so unchanged rows are neither
// written nor locked and a re-import writes nothing. The persons and their
// enrolments go in one statement: one join of the staged rows with the
// stored ones classifies them and gives each new person its id from the
// identity sequence, so the enrolments need no second join. (Data-modifying
// CTEs run together; the foreign key checks run at the statement's end,
// when the new persons exist.)
func upsert(ctx context.Context, tx pgx.Tx, rep *Report, year int, prog Progress) error {
	var hTotal int
	err := tx.QueryRow(ctx, `
		WITH w AS (
			INSERT INTO household (id, village_code, category)
			SELECT s.id, s.village_code, s.category
			FROM roster_household s LEFT JOIN household h ON h.id = s.id
			WHERE h.id IS NULL OR (h.village_code, h.category) IS DISTINCT FROM (s.village_code, s.category)
			ON CONFLICT (id) DO UPDATE SET village_code = excluded.village_code, category = excluded.category, updated_at = now()
			WHERE (household.village_code, household.category) IS DISTINCT FROM (excluded.village_code, excluded.category)
			RETURNING xmax = 0 AS inserted)
		SELECT (SELECT count(*) FROM roster_household), count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
		FROM w`).Scan(&hTotal, &rep.Households.Added, &rep.Households.Updated)
	if err != nil {
		return fmt.Errorf("write households: %w", err)
	}
	rep.Households.Unchanged = hTotal - rep.Households.Added - rep.Households.Updated
	prog.Set(2)
	var pTotal int
	err = tx.QueryRow(ctx, `
		WITH cur AS MATERIALIZED (
			SELECT s.national_id, s.name, s.household_id, s.relation, s.insured,
				coalesce(p.id, nextval(pg_get_serial_sequence('person', 'id'))) AS id,
				p.id IS NULL AS is_new,
				p.id IS NOT NULL AND (p.name, p.household_id, p.relation) IS DISTINCT FROM (s.name, s.household_id, s.relation) AS changed,
				i.insured IS DISTINCT FROM s.insured AS insured_changed
			FROM roster_person s
			LEFT JOIN person p ON p.national_id = s.national_id
			LEFT JOIN person_insurance i ON i.person_id = p.id AND i.year = $1),
		w AS (
			INSERT INTO person (id, national_id, name, household_id, relation) OVERRIDING SYSTEM VALUE
			SELECT id, national_id, name, household_id, relation FROM cur WHERE is_new OR changed
			ON CONFLICT (national_id) DO UPDATE SET name = excluded.name, household_id = excluded.household_id,
				relation = excluded.relation, updated_at = now()
			WHERE (person.name, person.household_id, person.relation) IS DISTINCT FROM (excluded.name, excluded.household_id, excluded.relation)),
		ins AS (
			INSERT INTO person_insurance (person_id, year, insured)
			SELECT id, $1, insured FROM cur WHERE insured_changed
			ON CONFLICT (person_id, year) DO UPDATE SET insured = excluded.insured, updated_at = now()
			WHERE person_insurance.insured IS DISTINCT FROM excluded.insured)
		SELECT count(*), count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new AND (changed OR insured_changed))
		FROM cur`, year).Scan(&pTotal, &rep.Persons.Added, &rep.Persons.Updated)
	if err != nil {
		return fmt.Errorf("write persons: %w", err)
	}
	rep.Persons.Unchanged = pTotal - rep.Persons.Added - rep.Persons.Updated
	prog.Set(3)
	return nil
}
