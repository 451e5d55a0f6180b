package household

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Category is a household's poverty category; every member has it.
type Category string

// The poverty categories. Any category but None counts as poor.
const (
	None           Category = "none"            // not poor
	RegisteredPoor Category = "registered_poor" // 建档立卡
	Dibao          Category = "dibao"           // 低保
	Tekun          Category = "tekun"           // 特困供养
)

// Categories lists every category.
var Categories = []Category{RegisteredPoor, Dibao, Tekun, None}

// Valid reports whether c is a known category.
func (c Category) Valid() bool { return slices.Contains(Categories, c) }

// Poor reports whether c is one of the poverty categories.
func (c Category) Poor() bool { return c.Valid() && c != None }

// Relation is a member's relation to the head of the household.
type Relation string

// The relations to the head.
const (
	Head       Relation = "head"
	Spouse     Relation = "spouse"
	Child      Relation = "child"
	Parent     Relation = "parent"
	Grandchild Relation = "grandchild"
	Other      Relation = "other"
)

// Relations lists every relation.
var Relations = []Relation{Head, Spouse, Child, Parent, Grandchild, Other}

// Valid reports whether r is a known relation.
func (r Relation) Valid() bool { return slices.Contains(Relations, r) }

// Person is a member of a household. NationalID is the full identity
// number: render it with MaskID unless the reader may see it whole.
type Person struct {
	ID          int64     `json:"id"`
	NationalID  string    `json:"national_id"`
	Name        string    `json:"name"`
	Sex         string    `json:"sex"`        // "M" or "F", from the identity number
	BirthDate   time.Time `json:"birth_date"` // from the identity number; midnight UTC
	HouseholdID string    `json:"household_id"`
	Relation    Relation  `json:"relation"`
	// VillageCode and Category are the household's.
	VillageCode string   `json:"village_code"`
	Category    Category `json:"category"`
}

// Region is the 6-digit region code the identity number was issued in.
func (p Person) Region() string {
	if len(p.NationalID) < 6 {
		return ""
	}
	return p.NationalID[:6]
}

// Household is a registered household: exactly one head and its members.
type Household struct {
	ID          string   `json:"id"`
	VillageCode string   `json:"village_code"`
	Category    Category `json:"category"`
	Members     []Person `json:"members"` // the head first, then by relation and id
}

// Head returns the head of the household.
func (h Household) Head() (Person, bool) {
	for _, m := range h.Members {
		if m.Relation == Head {
			return m, true
		}
	}
	return Person{}, false
}

// ErrNotFound is wrapped by the NotFound errors of the store.
var ErrNotFound = errors.New("not found")

// Store reads the household, person and person_insurance tables. Its
// methods take the DBTX to run on (a pool or a transaction), so a caller
// can read a person inside its own transaction.
type Store struct{}

// NewStore returns a Store.
func NewStore() *Store { return &Store{} }

const personColumns = `p.id, p.national_id, p.name, p.sex, p.birth_date, p.household_id, p.relation, h.village_code, h.category`

func scanPersons(rows pgx.Rows) ([]Person, error) {
	defer rows.Close()
	var out []Person
	for rows.Next() {
		var p Person
		if err := rows.Scan(&p.ID, &p.NationalID, &p.Name, &p.Sex, &p.BirthDate, &p.HouseholdID, &p.Relation, &p.VillageCode, &p.Category); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// GetPerson returns the person with id, or an apperr NotFound wrapping
// ErrNotFound. It does no access check and writes no audit entry: callers
// that serve a user check scope (CanSeeVillage) and audit.
func (s *Store) GetPerson(ctx context.Context, d db.DBTX, id int64) (Person, error) {
	rows, err := d.Query(ctx, `SELECT `+personColumns+` FROM person p JOIN household h ON h.id = p.household_id WHERE p.id = $1`, id)
	if err != nil {
		return Person{}, err
	}
	ps, err := scanPersons(rows)
	if err != nil {
		return Person{}, err
	}
	if len(ps) == 0 {
		return Person{}, apperr.Wrap(apperr.NotFound, ErrNotFound, fmt.Sprintf("person %d not found", id))
	}
	return ps[0], nil
}

// GetPersonByNationalID returns the person with the identity number (a
// lowercase x is accepted), or an apperr NotFound wrapping ErrNotFound.
func (s *Store) GetPersonByNationalID(ctx context.Context, d db.DBTX, nationalID string) (Person, error) {
	rows, err := d.Query(ctx, `SELECT `+personColumns+` FROM person p JOIN household h ON h.id = p.household_id WHERE p.national_id = $1`,
		NormalizeNationalID(nationalID))
	if err != nil {
		return Person{}, err
	}
	ps, err := scanPersons(rows)
	if err != nil {
		return Person{}, err
	}
	if len(ps) == 0 {
		return Person{}, apperr.Wrap(apperr.NotFound, ErrNotFound, "no person has this identity number")
	}
	return ps[0], nil
}

// Insured reports whether the person was enrolled in resident medical
// insurance in year. A year with no enrolment record counts as not
// insured; an unknown person is an apperr NotFound.
func (s *Store) Insured(ctx context.Context, d db.DBTX, personID int64, year int) (bool, error) {
	var exists bool
	var insured *bool
	err := d.QueryRow(ctx, `SELECT true, (SELECT insured FROM person_insurance WHERE person_id = $1 AND year = $2)
		FROM person WHERE id = $1`, personID, year).Scan(&exists, &insured)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, apperr.Wrap(apperr.NotFound, ErrNotFound, fmt.Sprintf("person %d not found", personID))
	}
	if err != nil {
		return false, err
	}
	return insured != nil && *insured, nil
}

// InsuranceYears returns the person's enrolment per year on record.
func (s *Store) InsuranceYears(ctx context.Context, d db.DBTX, personID int64) (map[int]bool, error) {
	rows, err := d.Query(ctx, `SELECT year, insured FROM person_insurance WHERE person_id = $1`, personID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var y int
		var ins bool
		if err := rows.Scan(&y, &ins); err != nil {
			return nil, err
		}
		out[y] = ins
	}
	return out, rows.Err()
}

// GetHousehold returns the household with id and its members, or an
// apperr NotFound wrapping ErrNotFound.
func (s *Store) GetHousehold(ctx context.Context, d db.DBTX, id string) (Household, error) {
	var h Household
	err := d.QueryRow(ctx, `SELECT id, village_code, category FROM household WHERE id = $1`, id).Scan(&h.ID, &h.VillageCode, &h.Category)
	if errors.Is(err, pgx.ErrNoRows) {
		return Household{}, apperr.Wrap(apperr.NotFound, ErrNotFound, fmt.Sprintf("household %q not found", id))
	}
	if err != nil {
		return Household{}, err
	}
	rows, err := d.Query(ctx, `SELECT `+personColumns+` FROM person p JOIN household h ON h.id = p.household_id
		WHERE p.household_id = $1
		ORDER BY array_position(ARRAY['head','spouse','child','parent','grandchild','other'], p.relation), p.id`, id)
	if err != nil {
		return Household{}, err
	}
	if h.Members, err = scanPersons(rows); err != nil {
		return Household{}, err
	}
	if h.Members == nil {
		h.Members = []Person{}
	}
	return h, nil
}

// Filter narrows Search. Empty fields do not filter.
type Filter struct {
	// Q matches a name (substring), a full identity number, the last digits
	// of one (4 or more), or a household id.
	Q string
	// Village is a village facility code.
	Village string
	// HouseholdID selects the members of one household.
	HouseholdID string
	// Scope lists the villages whose persons may be returned (none when
	// empty). Callers serving a user set it with VisibleVillages.
	Scope []string
	// ScopeAll lifts the Scope limit, for trusted callers (the CLI).
	ScopeAll bool
	Limit    int
	Offset   int
}

// Search returns persons matching f, ordered by household and relation.
func (s *Store) Search(ctx context.Context, d db.DBTX, f Filter) ([]Person, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !f.ScopeAll {
		where = append(where, "h.village_code = ANY("+arg(f.Scope)+"::text[])")
	}
	if f.Village != "" {
		where = append(where, "h.village_code = "+arg(f.Village))
	}
	if f.HouseholdID != "" {
		where = append(where, "p.household_id = "+arg(f.HouseholdID))
	}
	if q := strings.TrimSpace(f.Q); q != "" {
		var or []string
		if isIDLike(q) {
			n := NormalizeNationalID(strings.ToUpper(q))
			if len(n) == NationalIDLen {
				or = append(or, "p.national_id = "+arg(n))
			} else if len(n) >= 4 {
				or = append(or, "p.national_id LIKE "+arg("%"+n))
			}
		}
		if ValidHouseholdID(q) {
			or = append(or, "p.household_id = "+arg(q))
		}
		if !isIDLike(q) {
			or = append(or, "p.name LIKE "+arg("%"+likeEscape(q)+"%"))
		}
		if len(or) == 0 {
			or = append(or, "false") // nothing to match on
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	sql := `SELECT ` + personColumns + ` FROM person p JOIN household h ON h.id = p.household_id`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += ` ORDER BY p.household_id, array_position(ARRAY['head','spouse','child','parent','grandchild','other'], p.relation), p.id
		LIMIT ` + arg(f.Limit) + ` OFFSET ` + arg(f.Offset)
	rows, err := d.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return scanPersons(rows)
}

func isIDLike(q string) bool {
	for i := 0; i < len(q); i++ {
		c := q[i]
		if (c < '0' || c > '9') && !(i == len(q)-1 && (c == 'x' || c == 'X')) {
			return false
		}
	}
	return len(q) > 0 && len(q) <= NationalIDLen
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// VisibleVillages returns the village codes whose persons a user of
// facility may see: the villages at or below facility, and for an admin
// (region != "") also every village of that region.
func (s *Store) VisibleVillages(ctx context.Context, d db.DBTX, facility, region string) ([]string, error) {
	rows, err := d.Query(ctx, `WITH RECURSIVE t AS (
			SELECT code, tier FROM facility WHERE code = $1
			UNION ALL
			SELECT f.code, f.tier FROM facility f JOIN t ON f.parent_code = t.code)
		SELECT code FROM t WHERE tier = 'village'
		UNION
		SELECT code FROM facility WHERE $2 <> '' AND region_code = $2 AND tier = 'village'`, facility, region)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Stats counts households and persons per category.
type Stats struct {
	Households map[Category]int `json:"households"`
	Persons    map[Category]int `json:"persons"`
}

// Stats returns the number of households and persons per category; every
// category is present.
func (s *Store) Stats(ctx context.Context, d db.DBTX) (Stats, error) {
	st := Stats{Households: map[Category]int{}, Persons: map[Category]int{}}
	for _, c := range Categories {
		st.Households[c], st.Persons[c] = 0, 0
	}
	rows, err := d.Query(ctx, `SELECT h.category, count(DISTINCT h.id), count(p.id)
		FROM household h LEFT JOIN person p ON p.household_id = h.id GROUP BY h.category`)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var c Category
		var nh, np int
		if err := rows.Scan(&c, &nh, &np); err != nil {
			return st, err
		}
		st.Households[c], st.Persons[c] = nh, np
	}
	return st, rows.Err()
}

// FormatStats renders Stats as the table `qinba households stats` prints.
func FormatStats(st Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %10s %10s\n", "category", "households", "persons")
	th, tp := 0, 0
	for _, c := range Categories {
		fmt.Fprintf(&b, "%-16s %10d %10d\n", c, st.Households[c], st.Persons[c])
		th += st.Households[c]
		tp += st.Persons[c]
	}
	fmt.Fprintf(&b, "%-16s %10d %10d\n", "total", th, tp)
	return b.String()
}
