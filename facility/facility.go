package facility

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Tier is a level of the network.
type Tier string

// The four tiers, highest first.
const (
	City     Tier = "city"
	County   Tier = "county"
	Township Tier = "township"
	Village  Tier = "village"
)

// Tiers lists the tiers from the top down.
var Tiers = []Tier{City, County, Township, Village}

// Rank is 0 for city up to 3 for village; -1 for an unknown tier.
func (t Tier) Rank() int {
	for i, x := range Tiers {
		if x == t {
			return i
		}
	}
	return -1
}

// Valid reports whether t is one of the four tiers.
func (t Tier) Valid() bool { return t.Rank() >= 0 }

// ParentTier is the tier a facility of tier t must hang under ("" for city).
func (t Tier) ParentTier() Tier {
	if r := t.Rank(); r > 0 {
		return Tiers[r-1]
	}
	return ""
}

// Higher reports whether t is above u in the network.
func (t Tier) Higher(u Tier) bool { return t.Rank() < u.Rank() }

// Facility is one institution of the network.
type Facility struct {
	Code       string `json:"code"`
	Name       string `json:"name"`
	Tier       Tier   `json:"tier"`
	ParentCode string `json:"parent_code,omitempty"`
	RegionCode string `json:"region_code"`
}

// ErrNotFound is returned when no facility has the code.
var ErrNotFound = errors.New("facility not found")

// Store reads and writes the facility table.
type Store struct{ db db.DBTX }

// NewStore returns a store on d (a pool or a transaction).
func NewStore(d db.DBTX) *Store { return &Store{db: d} }

const columns = `code, name, tier, coalesce(parent_code, ''), region_code`

func scan(rows pgx.Rows) ([]Facility, error) {
	defer rows.Close()
	var out []Facility
	for rows.Next() {
		var f Facility
		if err := rows.Scan(&f.Code, &f.Name, &f.Tier, &f.ParentCode, &f.RegionCode); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Get returns the facility with code, or an apperr NotFound wrapping
// ErrNotFound.
func (s *Store) Get(ctx context.Context, code string) (Facility, error) {
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM facility WHERE code = $1`, code)
	if err != nil {
		return Facility{}, err
	}
	fs, err := scan(rows)
	if err != nil {
		return Facility{}, err
	}
	if len(fs) == 0 {
		return Facility{}, apperr.Wrap(apperr.NotFound, ErrNotFound, fmt.Sprintf("facility %q not found", code))
	}
	return fs[0], nil
}

// Filter narrows List. Empty fields do not filter.
type Filter struct {
	Tier   Tier
	Parent string
	Region string
	Text   string // substring of the code or the name
	Limit  int
	Offset int
}

// List returns facilities matching f, ordered by tier then code.
func (s *Store) List(ctx context.Context, f Filter) ([]Facility, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM facility
		WHERE ($1 = '' OR tier = $1)
		  AND ($2 = '' OR parent_code = $2)
		  AND ($3 = '' OR region_code = $3)
		  AND ($4 = '' OR strpos(lower(code), lower($4)) > 0 OR strpos(name, $4) > 0)
		ORDER BY array_position(ARRAY['city','county','township','village'], tier), code
		LIMIT $5 OFFSET $6`, string(f.Tier), f.Parent, f.Region, f.Text, f.Limit, f.Offset)
	if err != nil {
		return nil, err
	}
	return scan(rows)
}

// Subtree returns the facility with code and everything below it, top down.
func (s *Store) Subtree(ctx context.Context, code string) ([]Facility, error) {
	if _, err := s.Get(ctx, code); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `WITH RECURSIVE t AS (
			SELECT code, 0 AS depth FROM facility WHERE code = $1
			UNION ALL
			SELECT f.code, t.depth + 1 FROM facility f JOIN t ON f.parent_code = t.code)
		SELECT `+columns+` FROM facility JOIN t USING (code) ORDER BY t.depth, code`, code)
	if err != nil {
		return nil, err
	}
	return scan(rows)
}

// Chain returns the facility with code and its ancestors up to the city,
// bottom up.
func (s *Store) Chain(ctx context.Context, code string) ([]Facility, error) {
	if _, err := s.Get(ctx, code); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `WITH RECURSIVE t AS (
			SELECT code, parent_code AS up, 0 AS depth FROM facility WHERE code = $1
			UNION ALL
			SELECT f.code, f.parent_code, t.depth + 1 FROM facility f JOIN t ON f.code = t.up)
		SELECT `+columns+` FROM facility JOIN t USING (code) ORDER BY t.depth`, code)
	if err != nil {
		return nil, err
	}
	return scan(rows)
}

// IsAncestor reports whether ancestor is code itself or above it.
func (s *Store) IsAncestor(ctx context.Context, ancestor, code string) (bool, error) {
	var ok bool
	err := s.db.QueryRow(ctx, `WITH RECURSIVE t AS (
			SELECT code, parent_code FROM facility WHERE code = $2
			UNION ALL
			SELECT f.code, f.parent_code FROM facility f JOIN t ON f.code = t.parent_code)
		SELECT EXISTS (SELECT 1 FROM t WHERE code = $1)`, ancestor, code).Scan(&ok)
	return ok, err
}

// Stats counts facilities per tier; every tier is present in the map.
func (s *Store) Stats(ctx context.Context) (map[Tier]int, error) {
	rows, err := s.db.Query(ctx, `SELECT tier, count(*) FROM facility GROUP BY tier`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[Tier]int{}
	for _, t := range Tiers {
		out[t] = 0
	}
	for rows.Next() {
		var t Tier
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// FormatStats renders Stats as the lines `qinba facilities stats` prints.
func FormatStats(st map[Tier]int) string {
	var b strings.Builder
	total := 0
	for _, t := range Tiers {
		fmt.Fprintf(&b, "%-9s %4d\n", t, st[t])
		total += st[t]
	}
	fmt.Fprintf(&b, "%-9s %4d\n", "total", total)
	return b.String()
}
