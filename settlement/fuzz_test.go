package settlement

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// FuzzRunCases feeds arbitrary input documents to the conformance runner.
// It must never panic; when the document parses, the output must be JSON
// with one case per input case and every result must be well formed: amounts
// with exactly two decimals, never "-0.00", and the split summing to the
// total. Seeds: f.Add below and testdata/fuzz/FuzzRunCases.
func FuzzRunCases(f *testing.F) {
	f.Add([]byte(`{"cases": [{"id": "c1", "person": {"category": "registered_poor", "insured": true}, "bills": [
	 {"id": "b1", "date": "2019-03-02", "kind": "inpatient", "tier": "county", "emergency": false,
	  "referral": {"direction": "up", "prior_deductible_paid": "50.00"},
	  "lines": [{"class": "A", "amount": "8000.00"}, {"class": "B", "amount": "1200.50"}]},
	 {"reverse": "b1"}]}]}`))
	f.Add([]byte(`{"cases": [{"id": "o", "person": {"category": "none", "insured": true}, "bills": [
	 {"id": "o1", "date": "2019-01-03", "kind": "outpatient", "tier": "township", "lines": [{"class": "B", "amount": "45.5"}]},
	 {"id": "o2", "date": "2019-01-04", "kind": "outpatient", "tier": "village", "lines": [{"class": "C", "amount": "1"}]}]}]}`))
	f.Add([]byte(`{"cases": [{"id": 1}, 2, {"id": "x", "person": {"category": "tekun", "insured": "no"}, "bills": []}]}`))
	f.Add([]byte(`{"cases": []}`))
	f.Add([]byte(`{"cases"`))
	p := ReferencePolicy()
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if err := RunCases(p, bytes.NewReader(data), &out); err != nil {
			return
		}
		var in struct {
			Cases []json.RawMessage `json:"cases"`
		}
		if err := json.Unmarshal(data, &in); err != nil {
			// RunCases accepted a document encoding/json refuses for the
			// struct (e.g. duplicate keys of other types); nothing to compare.
			in.Cases = nil
		}
		var doc struct {
			Cases []struct {
				Error   *string          `json:"error"`
				Results []map[string]any `json:"results"`
			} `json:"cases"`
		}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.Bytes())
		}
		if in.Cases != nil && len(doc.Cases) != len(in.Cases) {
			t.Fatalf("%d cases in, %d out", len(in.Cases), len(doc.Cases))
		}
		for _, c := range doc.Cases {
			if c.Error != nil {
				if *c.Error == "" || c.Results != nil {
					t.Fatalf("bad error case: %s", out.Bytes())
				}
				continue
			}
			for _, r := range c.Results {
				checkOutputResult(t, r)
			}
		}
	})
}

var outputFunds = []string{"basic", "critical", "assistance", "supplementary", "backstop", "hospital", "patient"}

func checkOutputResult(t *testing.T, r map[string]any) {
	t.Helper()
	amount := func(k string) decimal.Decimal {
		s, ok := r[k].(string)
		if !ok {
			t.Fatalf("%s is not a string: %v", k, r)
		}
		neg := strings.HasPrefix(s, "-")
		if s == "-0.00" || !isAmount(strings.TrimPrefix(s, "-")) || len(s) < 4 || s[len(s)-3] != '.' {
			t.Fatalf("%s = %q", k, s)
		}
		d := decimal.RequireFromString(s)
		if reversal, _ := r["reversal"].(bool); neg != reversal && !d.IsZero() {
			t.Fatalf("%s = %q with reversal=%v", k, s, reversal)
		}
		return d
	}
	sum := decimal.Decimal{}
	for _, k := range outputFunds {
		sum = sum.Add(amount(k))
	}
	amount("eligible")
	amount("deductible")
	if total := amount("total"); !sum.Equal(total) {
		t.Fatalf("split sums to %s, total %s: %v", sum, total, r)
	}
}

// FuzzParsePolicy feeds arbitrary bytes to the policy parser. It must never
// panic, must report problems as *ValidationError, and a policy it accepts
// must settle a set of fixed bills with well-formed results (no negative
// amount, split summing to the total, no fund above its base). Seeds: f.Add
// below and testdata/fuzz/FuzzParsePolicy.
func FuzzParsePolicy(f *testing.F) {
	f.Add(ReferencePolicy().Source())
	for _, p := range propertyPolicies(f) {
		f.Add(p.Source())
	}
	f.Add([]byte(`{"id": "x"}`))
	f.Add([]byte(`{"id": "x", "valid_from": "2019-01-01", "valid_to": "2019-12-31", "item_classes": {"A": {"eligible_share": "1"}}}`))
	f.Add([]byte(`null`))
	bills := fuzzBills()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Message == "" {
				t.Fatalf("error %v is not a *ValidationError with a message", err)
			}
			return
		}
		if !bytes.Equal(p.Source(), data) {
			t.Fatal("Source differs from the input")
		}
		for _, person := range []Person{
			{CategoryNone, true}, {CategoryRegisteredPoor, true}, {CategoryDibao, true}, {CategoryTekun, true}, {CategoryTekun, false},
		} {
			for _, kind := range []string{KindOutpatient, KindInpatient} {
				for _, tier := range p.Tiers(kind) {
					acc := Accumulators{}
					for i, b := range bills {
						b.Kind, b.Tier = kind, tier
						r, next, err := p.Settle(person, acc, b)
						if err != nil {
							t.Fatalf("settle %d under an accepted policy: %v", i, err)
						}
						checkResult(t, "fuzz", p, person, acc, b, r)
						checkCaps(t, "fuzz", p, person, next)
						acc = next
					}
				}
			}
		}
	})
}

// fuzzBills is a small history exercising every step: a referral up and
// down, an emergency, large amounts and every class.
func fuzzBills() []Bill {
	mk := func(emerg bool, ref *Referral, pairs ...string) Bill {
		b := inpatient(TierCounty, pairs...)
		b.Emergency, b.Referral = emerg, ref
		return b
	}
	return []Bill{
		mk(false, nil, "A", "1234.56", "B", "789.01", "C", "50"),
		mk(true, nil, "A", "98765.43", "C", "12000"),
		mk(false, &Referral{Direction: DirectionUp, PriorDeductiblePaid: dec("123.45")}, "B", "250000.99"),
		mk(false, &Referral{Direction: DirectionDown}, "A", "0.01"),
		mk(false, nil, "C", "0"),
	}
}
