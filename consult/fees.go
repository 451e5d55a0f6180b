package consult

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/settlement"
)

// DefaultFeesJSON is the embedded teleconsultation fee table (fees.json).
//
//go:embed fees.json
var DefaultFeesJSON []byte

// Fee is one entry of the fee table: what a consult from a facility of
// FromTier to one of ToTier costs.
type Fee struct {
	FromTier facility.Tier `json:"from_tier"`
	ToTier   facility.Tier `json:"to_tier"`
	ItemCode string        `json:"item_code"`
	Name     string        `json:"name"`
	// Class is the insurance class: A, B or C.
	Class string `json:"class"`
	// Price is yuan, e.g. "30.00".
	Price string `json:"price"`

	price decimal.Decimal
}

// FeeTable is a parsed, validated fee table. Tiers and prices are data:
// change fees.json, not code.
type FeeTable struct {
	Version string
	byTiers map[[2]facility.Tier]Fee
}

// ParseFees parses and validates a fee table file.
func ParseFees(data []byte) (*FeeTable, error) {
	var f struct {
		Version string `json:"version"`
		Note    string `json:"note"`
		Fees    []Fee  `json:"fees"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("consult fees: %w", err)
	}
	if f.Version == "" {
		return nil, fmt.Errorf("consult fees: no version")
	}
	t := &FeeTable{Version: f.Version, byTiers: map[[2]facility.Tier]Fee{}}
	for i, e := range f.Fees {
		switch {
		case !e.FromTier.Valid() || !e.ToTier.Valid():
			return nil, fmt.Errorf("consult fees: entry %d: bad tier %q → %q", i, e.FromTier, e.ToTier)
		case !e.ToTier.Higher(e.FromTier):
			return nil, fmt.Errorf("consult fees: entry %d: %s is not above %s", i, e.ToTier, e.FromTier)
		case e.ItemCode == "" || len(e.ItemCode) > 64 || e.Name == "" || len([]rune(e.Name)) > 100:
			return nil, fmt.Errorf("consult fees: entry %d: item code and name are required", i)
		case e.Class != settlement.ClassA && e.Class != settlement.ClassB && e.Class != settlement.ClassC:
			return nil, fmt.Errorf("consult fees: entry %d: class %q: A, B or C", i, e.Class)
		}
		p, ok := settlement.ParseAmount(e.Price)
		if !ok {
			return nil, fmt.Errorf("consult fees: entry %d: bad price %q", i, e.Price)
		}
		e.price = p
		k := [2]facility.Tier{e.FromTier, e.ToTier}
		if _, dup := t.byTiers[k]; dup {
			return nil, fmt.Errorf("consult fees: %s → %s listed twice", e.FromTier, e.ToTier)
		}
		t.byTiers[k] = e
	}
	return t, nil
}

// Lookup returns the fee of a consult from a facility of tier from to one
// of tier to.
func (t *FeeTable) Lookup(from, to facility.Tier) (Fee, bool) {
	e, ok := t.byTiers[[2]facility.Tier{from, to}]
	return e, ok
}

// FeeLine is the teleconsultation fee of an ended consult, shaped like a
// bill line (settlement's LineInput) so billing can add it to the
// patient's bill at Facility.
type FeeLine struct {
	ConsultID int64  `json:"consult_id"`
	PersonID  int64  `json:"person_id"`
	Facility  string `json:"facility"`
	ItemCode  string `json:"item_code"`
	Name      string `json:"name"`
	Class     string `json:"class"`
	Quantity  string `json:"quantity"`
	UnitPrice string `json:"unit_price"`
	Amount    string `json:"amount"`
	// FeeTable is the version of the fee table that priced it.
	FeeTable  string    `json:"fee_table"`
	CreatedAt time.Time `json:"created_at"`
}
