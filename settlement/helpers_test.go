package settlement

import (
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"
)

// dec parses a decimal literal for tests.
func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// referenceMap returns the reference policy as a generic JSON map, for
// tests that derive other policies from it.
func referenceMap(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ReferencePolicy().Source(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// obj walks a path of object keys in a generic JSON map.
func obj(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

// policyWith returns the reference policy changed by edit.
func policyWith(t testing.TB, edit func(m map[string]any)) *Policy {
	t.Helper()
	m := referenceMap(t)
	edit(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		t.Fatalf("policyWith: %v", err)
	}
	return p
}

// inpatient builds an inpatient bill from class/amount pairs.
func inpatient(tier string, pairs ...string) Bill {
	b := Bill{ID: "b", Kind: KindInpatient, Tier: tier}
	for i := 0; i+1 < len(pairs); i += 2 {
		b.Lines = append(b.Lines, Line{Class: pairs[i], Amount: dec(pairs[i+1])})
	}
	return b
}

// outpatient builds an outpatient bill from class/amount pairs.
func outpatient(tier string, pairs ...string) Bill {
	b := inpatient(tier, pairs...)
	b.Kind = KindOutpatient
	return b
}

// split returns the split of r as strings, for compact comparisons.
type split struct {
	Total, Eligible, Deductible, Basic, Critical, Assistance, Supplementary, Backstop, Hospital, Patient string
}

func splitOf(r Result) split {
	return split{
		FormatMoney(r.Total), FormatMoney(r.Eligible), FormatMoney(r.Deductible), FormatMoney(r.Basic),
		FormatMoney(r.Critical), FormatMoney(r.Assistance), FormatMoney(r.Supplementary),
		FormatMoney(r.Backstop), FormatMoney(r.Hospital), FormatMoney(r.Patient),
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
