package facility

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// CSVHeader is the header line the import expects.
var CSVHeader = []string{"code", "name", "tier", "parent_code", "region_code"}

// RowError is a rejected line of an import.
type RowError struct {
	Line   int    `json:"line"`
	Column string `json:"column,omitempty"`
	Reason string `json:"reason"`
}

func (e RowError) String() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Column, e.Reason)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// ImportError lists every bad line of a rejected import.
type ImportError struct{ Rows []RowError }

func (e *ImportError) Error() string {
	lines := make([]string, len(e.Rows))
	for i, r := range e.Rows {
		lines[i] = r.String()
	}
	return fmt.Sprintf("%d bad rows, nothing written:\n%s", len(e.Rows), strings.Join(lines, "\n"))
}

// ImportResult counts what an import did.
type ImportResult struct {
	Added     int `json:"added"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
}

var (
	codeRe   = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)
	regionRe = regexp.MustCompile(`^[0-9]{6}$`)
)

type row struct {
	line int
	Facility
}

// ParseCSV reads and checks a facilities file on its own (header, fields,
// duplicate codes). Parent references are checked by Import, which also
// knows the facilities already stored.
func ParseCSV(r io.Reader) ([]row, []RowError, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, nil, apperr.E(apperr.Invalid, "the file is empty: expected the header %s", strings.Join(CSVHeader, ","))
	}
	if err != nil {
		return nil, nil, apperr.Wrap(apperr.Invalid, err, "cannot read the CSV header: "+err.Error())
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	if strings.Join(header, ",") != strings.Join(CSVHeader, ",") {
		return nil, nil, apperr.E(apperr.Invalid, "line 1: header must be %s", strings.Join(CSVHeader, ","))
	}
	var rows []row
	var bad []RowError
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// A parse error carries its own line; FieldPos is only valid
			// after a successful Read.
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, RowError{Line: pe.Line, Reason: pe.Err.Error()})
				if errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrBareQuote) {
					// The reader cannot resynchronise after a broken quote.
					break
				}
				continue
			}
			return nil, nil, err
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(CSVHeader) {
			bad = append(bad, RowError{Line: line, Reason: fmt.Sprintf("expected %d fields, got %d", len(CSVHeader), len(rec))})
			continue
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		f := Facility{Code: rec[0], Name: rec[1], Tier: Tier(rec[2]), ParentCode: rec[3], RegionCode: rec[4]}
		ok := true
		reject := func(col, format string, args ...any) {
			bad = append(bad, RowError{Line: line, Column: col, Reason: fmt.Sprintf(format, args...)})
			ok = false
		}
		switch {
		case !utf8.ValidString(strings.Join(rec, "")):
			reject("", "not valid UTF-8")
		case !codeRe.MatchString(f.Code):
			reject("code", "must be 1 to 32 letters, digits or dashes")
		}
		if f.Name == "" {
			reject("name", "must not be empty")
		} else if utf8.RuneCountInString(f.Name) > 100 {
			reject("name", "longer than 100 characters")
		}
		if !f.Tier.Valid() {
			reject("tier", "unknown tier %q (city, county, township or village)", rec[2])
		}
		if f.Tier == City && f.ParentCode != "" {
			reject("parent_code", "a city facility has no parent")
		}
		if f.Tier.Valid() && f.Tier != City && f.ParentCode == "" {
			reject("parent_code", "a %s facility needs a %s parent", f.Tier, f.Tier.ParentTier())
		}
		if !regionRe.MatchString(f.RegionCode) {
			reject("region_code", "must be 6 digits")
		}
		if prev, dup := seen[f.Code]; dup && f.Code != "" {
			reject("code", "duplicate code %s (first on line %d)", f.Code, prev)
		} else {
			seen[f.Code] = line
		}
		if ok {
			rows = append(rows, row{line: line, Facility: f})
		}
	}
	return rows, bad, nil
}

// Import loads a facilities CSV all or nothing: every bad line is reported
// (as an *ImportError) and nothing is written, or every row is inserted or
// updated in one transaction. Re-importing the same file changes nothing.
func Import(ctx context.Context, pool db.TxBeginner, r io.Reader) (ImportResult, error) {
	return ImportScoped(ctx, pool, r, "")
}

// ImportScoped is Import for an admin of region: a row that names another
// region, or would change a facility of another region, makes the whole
// import Forbidden, and nothing is written. An empty region (the CLI, run
// by the operator) allows every row.
func ImportScoped(ctx context.Context, pool db.TxBeginner, r io.Reader, region string) (ImportResult, error) {
	rows, bad, err := ParseCSV(r)
	if err != nil {
		return ImportResult{}, err
	}
	var res ImportResult
	err = db.WithTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE facility IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		existing, err := NewStore(tx).List(ctx, Filter{Limit: 1 << 30})
		if err != nil {
			return err
		}
		tiers := map[string]Tier{}
		regions := map[string]string{}
		for _, f := range existing {
			tiers[f.Code] = f.Tier
			regions[f.Code] = f.RegionCode
		}
		if region != "" {
			var outside []RowError
			for _, r := range rows {
				if stored, ok := regions[r.Code]; r.RegionCode != region || (ok && stored != region) {
					outside = append(outside, RowError{Line: r.line, Column: "region_code",
						Reason: fmt.Sprintf("%s is outside your region %s", r.Code, region)})
				}
			}
			if len(outside) > 0 {
				return &apperr.Error{Code: apperr.Forbidden, Message: "the file names facilities outside your region; nothing was written",
					Details: map[string]any{"rows": outside}}
			}
		}
		for _, r := range rows {
			tiers[r.Code] = r.Tier
		}
		for _, r := range rows {
			if r.ParentCode == "" {
				continue
			}
			pt, ok := tiers[r.ParentCode]
			switch {
			case !ok:
				bad = append(bad, RowError{Line: r.line, Column: "parent_code", Reason: fmt.Sprintf("unknown parent %s", r.ParentCode)})
			case pt != r.Tier.ParentTier():
				bad = append(bad, RowError{Line: r.line, Column: "parent_code",
					Reason: fmt.Sprintf("a %s must hang under a %s, but %s is a %s", r.Tier, r.Tier.ParentTier(), r.ParentCode, pt)})
			}
		}
		// A re-tiered facility must not orphan stored children.
		inFile := map[string]bool{}
		for _, r := range rows {
			inFile[r.Code] = true
		}
		for _, f := range existing {
			if f.ParentCode == "" || inFile[f.Code] {
				continue
			}
			if tiers[f.ParentCode] != f.Tier.ParentTier() {
				bad = append(bad, RowError{Line: 0, Column: "tier",
					Reason: fmt.Sprintf("stored %s %s would no longer hang under a %s", f.Tier, f.Code, f.Tier.ParentTier())})
			}
		}
		if len(bad) > 0 {
			sortRowErrors(bad)
			return &ImportError{Rows: bad}
		}
		// Parents first, so the foreign key holds row by row.
		for _, tier := range Tiers {
			for _, r := range rows {
				if r.Tier != tier {
					continue
				}
				var inserted bool
				err := tx.QueryRow(ctx, `INSERT INTO facility (code, name, tier, parent_code, region_code)
					VALUES ($1, $2, $3, nullif($4, ''), $5)
					ON CONFLICT (code) DO UPDATE SET name = excluded.name, tier = excluded.tier,
						parent_code = excluded.parent_code, region_code = excluded.region_code, updated_at = now()
					WHERE (facility.name, facility.tier, facility.parent_code, facility.region_code)
						IS DISTINCT FROM (excluded.name, excluded.tier, excluded.parent_code, excluded.region_code)
					RETURNING xmax = 0`, r.Code, r.Name, string(r.Tier), r.ParentCode, r.RegionCode).Scan(&inserted)
				switch {
				case errors.Is(err, pgx.ErrNoRows):
					res.Unchanged++
				case err != nil:
					return fmt.Errorf("line %d: %w", r.line, err)
				case inserted:
					res.Added++
				default:
					res.Updated++
				}
			}
		}
		return nil
	})
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			return ImportResult{}, &apperr.Error{Code: apperr.Invalid, Message: ie.Error(), Err: ie}
		}
		return ImportResult{}, err
	}
	return res, nil
}

func sortRowErrors(rs []RowError) {
	slices.SortStableFunc(rs, func(a, b RowError) int { return a.Line - b.Line })
}
