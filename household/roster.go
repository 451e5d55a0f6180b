package household

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
)

// RosterHeader is the header line of a roster CSV (UTF-8, an optional BOM,
// LF or CRLF line ends).
var RosterHeader = []string{"household_id", "national_id", "name", "relation", "village_code", "category", "insured"}

// The roster's columns, as indexes into RosterHeader and Row.Fields.
const (
	colHousehold = iota
	colNationalID
	colName
	colRelation
	colVillage
	colCategory
	colInsured
	numCols
)

// MaxNameLen is the longest name accepted, in characters.
const MaxNameLen = 50

// ValidHouseholdID reports whether s is a household id: 1 to 32 letters,
// digits or dashes (the CHECK of household.id).
func ValidHouseholdID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// RowError is one problem with one line of a roster.
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

// Row is one data line of a roster. Fields holds the seven columns as read
// (spaces trimmed, the identity number normalised); the typed accessors
// are meaningful only when OK.
type Row struct {
	Line   int
	Fields [numCols]string
	// Raw is set only for a line with the wrong number of fields.
	Raw []string
	// Insured is the parsed insured column.
	Insured bool
	// OK is true when the line passed the checks of its own fields; it
	// may still be bad together with other lines (see Roster.Errors).
	OK bool

	checked bool  // checkRow ran: the line had the right number of fields
	bad     uint8 // bit i: column i failed its own check
}

// HouseholdID is the household_id column.
func (r *Row) HouseholdID() string { return r.Fields[colHousehold] }

// NationalID is the national_id column, normalised (upper-case X).
func (r *Row) NationalID() string { return r.Fields[colNationalID] }

// Name is the name column.
func (r *Row) Name() string { return r.Fields[colName] }

// Relation is the relation column.
func (r *Row) Relation() Relation { return Relation(r.Fields[colRelation]) }

// VillageCode is the village_code column.
func (r *Row) VillageCode() string { return r.Fields[colVillage] }

// Category is the category column.
func (r *Row) Category() Category { return Category(r.Fields[colCategory]) }

// valid reports whether column col passed its own check.
func (r *Row) valid(col int) bool { return r.checked && r.bad&(1<<col) == 0 }

// Roster is a parsed and checked roster file.
type Roster struct {
	Rows []*Row
	// Errors lists every problem found, ordered by line then column.
	Errors []RowError
	// Households lists each household of the file once, in order of
	// first appearance.
	Households []RosterHousehold
}

// RosterHousehold is a household as the file gives it.
type RosterHousehold struct {
	ID          string
	VillageCode string
	Category    Category
	// Line is the head's line (or the first line when there is no head).
	Line int
	// Rows are indexes into Roster.Rows.
	Rows []int
}

// Villages tells the checks which facility codes exist and their tiers.
type Villages map[string]facility.Tier

// HeaderError is a roster whose first line is not RosterHeader (or that is
// empty); nothing else of it is read.
type HeaderError struct{ Reason string }

func (e *HeaderError) Error() string { return "line 1: " + e.Reason }

// ParseRoster reads a roster CSV and checks every line: each field on its
// own (identity number, name, relation, village, category, insured flag)
// and the lines together (an identity number on two lines, exactly one
// head per household, one village and one category per household). It
// does not know the database: Import adds the checks against stored
// persons. A missing or wrong header is a *HeaderError (wrapped in an
// apperr Invalid); bad lines are listed in Roster.Errors. now decides what
// a birth date "in the future" is; progress, if not nil, gets the number of
// rows read every so often.
func ParseRoster(r io.Reader, villages Villages, now time.Time, progress func(rows int)) (*Roster, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, headerError("the file is empty: expected the header " + strings.Join(RosterHeader, ","))
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, headerError("cannot read the header: " + pe.Err.Error())
		}
		return nil, err
	}
	got := make([]string, len(header))
	for i, h := range header {
		got[i] = strings.TrimSpace(h)
	}
	if len(got) > 0 {
		got[0] = strings.TrimSpace(strings.TrimPrefix(got[0], "\ufeff"))
	}
	if !slices.Equal(got, RosterHeader) {
		return nil, headerError(fmt.Sprintf("the header must be %s (got %s)", strings.Join(RosterHeader, ","), shorten(strings.Join(got, ","), 200)))
	}
	ro := &Roster{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, err
			}
			ro.Rows = append(ro.Rows, &Row{Line: pe.StartLine})
			ro.Errors = append(ro.Errors, RowError{Line: pe.StartLine, Reason: "malformed CSV: " + pe.Err.Error()})
			continue
		}
		line, _ := cr.FieldPos(0)
		row := &Row{Line: line}
		ro.Rows = append(ro.Rows, row)
		if len(rec) != numCols {
			row.Raw = slices.Clone(rec)
			ro.Errors = append(ro.Errors, RowError{Line: line, Reason: fmt.Sprintf("expected %d fields, got %d", numCols, len(rec))})
			continue
		}
		for i := range rec {
			row.Fields[i] = strings.TrimSpace(rec[i])
		}
		ro.Errors = checkRow(row, villages, now, ro.Errors)
		if progress != nil && len(ro.Rows)%1024 == 0 {
			progress(len(ro.Rows))
		}
	}
	if progress != nil {
		progress(len(ro.Rows))
	}
	ro.Errors = checkTogether(ro, ro.Errors)
	for i := range ro.Errors {
		// A reason quotes what it found; never an identity number typed
		// into the wrong column.
		ro.Errors[i].Reason = auth.MaskIDNumbers(ro.Errors[i].Reason)
	}
	sortErrors(ro.Errors)
	return ro, nil
}

func headerError(reason string) error {
	he := &HeaderError{Reason: reason}
	return &apperr.Error{Code: apperr.Invalid, Message: he.Error(), Err: he}
}

// checkRow checks one line's fields on their own and fills the typed
// fields; it appends the problems to errs.
func checkRow(row *Row, villages Villages, now time.Time, errs []RowError) []RowError {
	f := &row.Fields
	row.checked = true
	bad := func(col int, format string, args ...any) {
		if row.bad&(1<<col) != 0 {
			return // one problem per column: the first (bad encoding) wins
		}
		errs = append(errs, RowError{Line: row.Line, Column: RosterHeader[col], Reason: fmt.Sprintf(format, args...)})
		row.bad |= 1 << col
	}
	for i := range f {
		if !utf8.ValidString(f[i]) {
			bad(i, "not valid UTF-8")
			f[i] = strings.ToValidUTF8(f[i], "\uFFFD")
		}
	}
	if !ValidHouseholdID(f[colHousehold]) {
		bad(colHousehold, "must be 1 to 32 letters, digits or dashes")
	}
	f[colNationalID] = NormalizeNationalID(f[colNationalID])
	if reason := checkNationalID(f[colNationalID], now); reason != "" {
		bad(colNationalID, "%s", reason)
	}
	switch name := f[colName]; {
	case name == "":
		bad(colName, "must not be empty")
	case utf8.RuneCountInString(name) > MaxNameLen:
		bad(colName, "longer than %d characters", MaxNameLen)
	case strings.ContainsFunc(name, unicode.IsControl):
		bad(colName, "contains control characters")
	}
	if !Relation(f[colRelation]).Valid() {
		bad(colRelation, "unknown relation %q (head, spouse, child, parent, grandchild or other)", shorten(f[colRelation], 40))
	}
	if v := f[colVillage]; v == "" {
		bad(colVillage, "must not be empty")
	} else if tier, ok := villages[v]; !ok {
		bad(colVillage, "no facility has the code %q", shorten(v, 40))
	} else if tier != facility.Village {
		bad(colVillage, "%s is a %s facility, not a village clinic", v, tier)
	}
	if !Category(f[colCategory]).Valid() {
		bad(colCategory, "unknown category %q (registered_poor, dibao, tekun or none)", shorten(f[colCategory], 40))
	}
	var ok bool
	if row.Insured, ok = parseBool(f[colInsured]); !ok {
		bad(colInsured, "must be true or false")
	}
	row.OK = row.bad == 0
	return errs
}

func parseBool(s string) (v, ok bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

// checkTogether checks the lines against each other: an identity number on
// two lines, exactly one head per household, and one village and category
// per household. It fills ro.Households.
func checkTogether(ro *Roster, errs []RowError) []RowError {
	seen := make(map[string]int, len(ro.Rows)) // national id -> index of first row
	flagged := map[int]bool{}
	idx := make(map[string]int, len(ro.Rows)/2) // household id -> index in ro.Households
	for i, row := range ro.Rows {
		if !row.checked {
			continue // a CSV syntax error or the wrong number of fields
		}
		if row.valid(colNationalID) {
			if first, dup := seen[row.NationalID()]; dup {
				fr := ro.Rows[first]
				if !flagged[first] {
					errs = append(errs, RowError{Line: fr.Line, Column: "national_id", Reason: fmt.Sprintf("the same identity number is on line %d", row.Line)})
					flagged[first] = true
				}
				errs = append(errs, RowError{Line: row.Line, Column: "national_id", Reason: fmt.Sprintf("the same identity number is on line %d", fr.Line)})
			} else {
				seen[row.NationalID()] = i
			}
		}
		if !row.valid(colHousehold) {
			continue
		}
		hi, ok := idx[row.HouseholdID()]
		if !ok {
			hi = len(ro.Households)
			idx[row.HouseholdID()] = hi
			ro.Households = append(ro.Households, RosterHousehold{ID: row.HouseholdID(), Line: row.Line, Rows: make([]int, 0, 4)})
		}
		h := &ro.Households[hi]
		h.Rows = append(h.Rows, i)
	}
	for hi := range ro.Households {
		h := &ro.Households[hi]
		var head, village, category *Row
		unsure := false // a line with a bad relation might be the head
		for _, i := range h.Rows {
			row := ro.Rows[i]
			unsure = unsure || !row.valid(colRelation)
			if row.Relation() == Head {
				if head == nil {
					head = row
					h.Line = row.Line
				} else {
					errs = append(errs, RowError{Line: row.Line, Column: "relation",
						Reason: fmt.Sprintf("household %s has a second head (the first is on line %d)", h.ID, head.Line)})
				}
			}
			if row.valid(colVillage) {
				if village == nil {
					village = row
					h.VillageCode = row.VillageCode()
				} else if row.VillageCode() != village.VillageCode() {
					errs = append(errs, RowError{Line: row.Line, Column: "village_code",
						Reason: fmt.Sprintf("household %s is in village %s on line %d", h.ID, village.VillageCode(), village.Line)})
				}
			}
			if row.valid(colCategory) {
				if category == nil {
					category = row
					h.Category = row.Category()
				} else if row.Category() != category.Category() {
					errs = append(errs, RowError{Line: row.Line, Column: "category",
						Reason: fmt.Sprintf("household %s has category %s on line %d", h.ID, category.Category(), category.Line)})
				}
			}
		}
		if head == nil && !unsure {
			errs = append(errs, RowError{Line: ro.Rows[h.Rows[0]].Line, Column: "relation",
				Reason: fmt.Sprintf("household %s has no head (exactly one line must have relation head)", h.ID)})
		}
	}
	return errs
}

func sortErrors(es []RowError) {
	order := func(col string) int {
		if i := slices.Index(RosterHeader, col); i >= 0 {
			return i
		}
		return -1
	}
	slices.SortStableFunc(es, func(a, b RowError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return order(a.Column) - order(b.Column)
	})
}

func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
