package settlement

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// propertyPolicies returns the reference policy and two policies with other
// figures: one where every cap is small and bites often (and rates clamp),
// one with null caps, fewer tiers, other categories under assistance and
// other segment counts.
func propertyPolicies(t testing.TB) map[string]*Policy {
	tight := policyWith(t, func(m map[string]any) {
		m["id"] = "tight"
		obj(m, "item_classes", "B")["eligible_share"] = "0.8"
		obj(m, "item_classes", "C")["eligible_share"] = "0.1"
		obj(m, "outpatient")["annual_cap"] = "100"
		obj(m, "outpatient", "tiers", "village")["per_visit_cap"] = "20"
		obj(m, "outpatient", "tiers", "township")["per_visit_cap"] = nil
		b := obj(m, "basic")
		obj(b, "tiers", "city")["rate"] = "0.99"
		obj(b, "tiers", "township")["rate"] = "0.05"
		obj(b, "tiers", "township")["deductible"] = "333.33"
		b["repeat_admission_deductible_factor"] = "1"
		b["poor_deductible_factor"] = "0.33"
		b["poor_rate_bonus"] = "0.1"
		b["unreferred_rate_penalty"] = map[string]any{"township": "0.1", "county": "0.3", "city": "0.05"}
		b["annual_cap"] = "20000"
		c := obj(m, "critical")
		c["threshold"] = "3000.01"
		c["poor_threshold_factor"] = "0.333"
		c["poor_rate_bonus"] = "0.2"
		c["segments"] = []any{
			map[string]any{"from": "0", "rate": "0.5"},
			map[string]any{"from": "1000", "rate": "0.6"},
			map[string]any{"from": "5000.50", "rate": "0.7"},
			map[string]any{"from": "20000", "rate": "0.8"},
		}
		c["annual_cap"] = "5000"
		c["poor_annual_cap"] = "8000"
		obj(m, "assistance", "tekun")["annual_cap"] = "3000"
		obj(m, "assistance", "dibao")["annual_cap"] = "1500"
		obj(m, "assistance", "registered_poor")["annual_cap"] = "500.55"
		obj(m, "supplementary")["annual_cap"] = "1000"
		obj(m, "backstop")["annual_patient_cap"] = "800"
		obj(m, "backstop")["min_reimbursed_share"] = "0.95"
		m["out_of_policy_patient_max_share"] = "0.03"
	})
	loose := policyWith(t, func(m map[string]any) {
		m["id"] = "loose"
		obj(m, "item_classes", "A")["eligible_share"] = "0.97"
		obj(m, "item_classes", "B")["eligible_share"] = "0.75"
		obj(m, "item_classes", "C")["eligible_share"] = "0.2"
		delete(obj(m, "outpatient", "tiers"), "village")
		obj(m, "outpatient", "tiers", "township")["per_visit_cap"] = nil
		obj(m, "outpatient")["annual_cap"] = nil
		b := obj(m, "basic")
		delete(obj(b, "tiers"), "township")
		delete(b, "unreferred_rate_penalty")
		b["annual_cap"] = nil
		c := obj(m, "critical")
		c["threshold"] = "0"
		c["poor_threshold_factor"] = "0"
		c["segments"] = []any{map[string]any{"from": "0", "rate": "0.5"}}
		c["annual_cap"] = nil
		m["assistance"] = map[string]any{
			"none":  map[string]any{"rate": "0.1", "annual_cap": "700"},
			"tekun": map[string]any{"rate": "0.9", "annual_cap": nil},
		}
		obj(m, "supplementary")["annual_cap"] = nil
		obj(m, "backstop")["annual_patient_cap"] = nil
		obj(m, "backstop")["min_reimbursed_share"] = "0.5"
		m["out_of_policy_patient_max_share"] = "0.3"
	})
	return map[string]*Policy{"reference": ReferencePolicy(), "tight": tight, "loose": loose}
}

// randAmount returns a random amount in fen, mostly small, sometimes large.
func randAmount(rng *rand.Rand) decimal.Decimal {
	var fen int64
	switch rng.IntN(10) {
	case 0:
		fen = 0
	case 1, 2, 3:
		fen = rng.Int64N(50_000)
	case 4, 5, 6, 7:
		fen = rng.Int64N(2_000_000)
	default:
		fen = rng.Int64N(30_000_000)
	}
	return decimal.New(fen, -2)
}

func randBill(rng *rand.Rand, p *Policy, id string) Bill {
	b := Bill{ID: id, Kind: KindInpatient}
	if out := p.Tiers(KindOutpatient); len(out) > 0 && rng.IntN(4) == 0 {
		b.Kind = KindOutpatient
	}
	tiers := p.Tiers(b.Kind)
	b.Tier = tiers[rng.IntN(len(tiers))]
	b.Emergency = rng.IntN(5) == 0
	switch rng.IntN(5) {
	case 0:
		b.Referral = &Referral{Direction: DirectionDown}
	case 1:
		b.Referral = &Referral{Direction: DirectionUp, PriorDeductiblePaid: decimal.New(rng.Int64N(70_000), -2)}
	}
	n := 1 + rng.IntN(20)
	for range n {
		b.Lines = append(b.Lines, Line{Class: itemClasses[rng.IntN(3)], Amount: randAmount(rng)})
	}
	return b
}

// biggerBill returns b with some line amounts increased and maybe more lines.
func biggerBill(rng *rand.Rand, b Bill) Bill {
	bb := b
	bb.Lines = append([]Line(nil), b.Lines...)
	for i := range bb.Lines {
		if rng.IntN(3) == 0 {
			bb.Lines[i].Amount = bb.Lines[i].Amount.Add(decimal.New(rng.Int64N(5_000_00), -2))
		}
	}
	for range rng.IntN(3) {
		bb.Lines = append(bb.Lines, Line{Class: itemClasses[rng.IntN(3)], Amount: randAmount(rng)})
	}
	return bb
}

type settled struct {
	bill     Bill
	r        Result
	reversed bool
}

// TestProperties settles random histories under several policies and checks
// the invariants of SPEC.md after every step.
func TestProperties(t *testing.T) {
	t.Parallel()
	histories := 400
	if testing.Short() {
		histories = 100
	}
	seed := uint64(0)
	for name, p := range propertyPolicies(t) {
		seed++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(2019, seed))
			for h := range histories {
				checkHistory(t, fmt.Sprintf("%s/%d", name, h), p, rng)
				if t.Failed() {
					return
				}
			}
		})
	}
}

var categoriesForTest = []string{CategoryNone, CategoryRegisteredPoor, CategoryDibao, CategoryTekun}

func checkHistory(t *testing.T, name string, p *Policy, rng *rand.Rand) {
	person := Person{Category: categoriesForTest[rng.IntN(4)], Insured: rng.IntN(10) != 0}
	var acc Accumulators
	var bills []*settled
	steps := 1 + rng.IntN(14)
	for i := range steps {
		// Sometimes reverse an earlier bill.
		if len(bills) > 0 && rng.IntN(5) == 0 {
			s := bills[rng.IntN(len(bills))]
			before := acc
			rr, after, err := Reverse(s.r, acc)
			if s.reversed {
				// The caller's bookkeeping says reversed; the engine may or
				// may not detect it, but must never change anything.
				continue
			}
			if err != nil {
				t.Fatalf("%s: reverse %s: %v", name, s.r.BillID, err)
			}
			if !after.Equal(before.Sub(s.r.Delta)) {
				t.Fatalf("%s: reversal did not subtract exactly the bill's delta", name)
			}
			checkNegated(t, name, s.r, rr)
			s.reversed = true
			acc = after
			checkCaps(t, name, p, person, acc)
			continue
		}
		b := randBill(rng, p, fmt.Sprintf("b%d", i))
		before := acc
		r, after, err := p.Settle(person, acc, b)
		if err != nil {
			t.Fatalf("%s: settle: %v", name, err)
		}
		checkResult(t, name, p, person, before, b, r)
		checkCaps(t, name, p, person, after)
		// Reversing right away restores the accumulators exactly.
		if _, back, err := Reverse(r, after); err != nil || !back.Equal(before) {
			t.Fatalf("%s: reversal does not restore the accumulators: %v", name, err)
		}
		// For the same history, a larger bill never leaves the patient paying less.
		bigger := biggerBill(rng, b)
		r2, _, err := p.Settle(person, before, bigger)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Patient.LessThan(r.Patient) {
			t.Fatalf("%s: larger bill, patient pays less: %s < %s\nbill %+v\nbigger %+v\nacc %+v",
				name, r2.Patient, r.Patient, b, bigger, before)
		}
		acc = after
		bills = append(bills, &settled{bill: b, r: r})
	}
	// The accumulators are exactly the sums of what the live bills paid.
	var want Accumulators
	for _, s := range bills {
		if s.reversed || !person.Insured {
			continue
		}
		r := s.r
		if s.bill.Kind == KindOutpatient {
			want.OutpatientPaid = want.OutpatientPaid.Add(r.Basic)
			continue
		}
		want.Admissions++
		want.BasicPaid = want.BasicPaid.Add(r.Basic)
		want.CriticalBase = want.CriticalBase.Add(r.Eligible.Sub(r.Basic))
		want.CriticalPaid = want.CriticalPaid.Add(r.Critical)
		want.AssistancePaid = want.AssistancePaid.Add(r.Assistance)
		want.SupplementaryPaid = want.SupplementaryPaid.Add(r.Supplementary)
		want.BackstopPaid = want.BackstopPaid.Add(r.Backstop)
		want.PatientInPolicy = want.PatientInPolicy.Add(
			r.Eligible.Sub(r.Basic).Sub(r.Critical).Sub(r.Assistance).Sub(r.Supplementary).Sub(r.Backstop))
	}
	if !acc.Equal(want) {
		t.Fatalf("%s: accumulators %+v\nwant sums %+v", name, acc, want)
	}
	// Reversing every live bill, in random order, brings the year back to zero.
	rng.Shuffle(len(bills), func(i, j int) { bills[i], bills[j] = bills[j], bills[i] })
	for _, s := range bills {
		if s.reversed {
			continue
		}
		var err error
		if _, acc, err = Reverse(s.r, acc); err != nil {
			t.Fatalf("%s: final reversal: %v", name, err)
		}
	}
	if !acc.Equal(Accumulators{}) {
		t.Fatalf("%s: after reversing everything: %+v", name, acc)
	}
}

func checkNegated(t *testing.T, name string, r, rr Result) {
	t.Helper()
	pairs := [][2]decimal.Decimal{{r.Total, rr.Total}, {r.Eligible, rr.Eligible}, {r.Deductible, rr.Deductible},
		{r.Basic, rr.Basic}, {r.Critical, rr.Critical}, {r.Assistance, rr.Assistance},
		{r.Supplementary, rr.Supplementary}, {r.Backstop, rr.Backstop}, {r.Hospital, rr.Hospital}, {r.Patient, rr.Patient}}
	for i, pr := range pairs {
		if !pr[0].Neg().Equal(pr[1]) {
			t.Fatalf("%s: reversal amount %d is %s, want −%s", name, i, pr[1], pr[0])
		}
		if FormatMoney(pr[1]) == "-0.00" {
			t.Fatalf("%s: -0.00", name)
		}
	}
	if !rr.Reversal {
		t.Fatalf("%s: reversal not marked", name)
	}
}

func checkResult(t *testing.T, name string, p *Policy, person Person, acc Accumulators, b Bill, r Result) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s bill %s (%s/%s, %s insured=%v): %s\nsplit %+v\nacc %+v", name, b.ID, b.Kind, b.Tier,
			person.Category, person.Insured, fmt.Sprintf(format, args...), splitOf(r), acc)
	}
	amounts := []decimal.Decimal{r.Total, r.Eligible, r.Deductible, r.Basic, r.Critical, r.Assistance,
		r.Supplementary, r.Backstop, r.Hospital, r.Patient}
	for i, a := range amounts {
		if a.Sign() < 0 {
			fail("amount %d negative", i)
		}
		if !a.Equal(a.Round(2)) {
			fail("amount %d has more than 2 decimals: %s", i, a)
		}
	}
	sum := r.Basic.Add(r.Critical).Add(r.Assistance).Add(r.Supplementary).Add(r.Backstop).Add(r.Hospital).Add(r.Patient)
	if !sum.Equal(r.Total) {
		fail("split sums to %s, not the total", sum)
	}
	var lines decimal.Decimal
	for _, l := range b.Lines {
		lines = lines.Add(l.Amount)
	}
	if !lines.Equal(r.Total) {
		fail("total %s != Σ lines %s", r.Total, lines)
	}
	if r.Eligible.GreaterThan(r.Total) || r.Deductible.GreaterThan(r.Eligible) {
		fail("eligible or deductible too large")
	}
	if !person.Insured {
		if !r.Patient.Equal(r.Total) || !r.Deductible.IsZero() || !r.Delta.Equal(Accumulators{}) {
			fail("uninsured person got something")
		}
		return
	}
	// No fund pays more than its base.
	rest := r.Eligible.Sub(r.Deductible)
	if b.Kind == KindOutpatient {
		rest = r.Eligible
	}
	for _, f := range []struct {
		name string
		v    decimal.Decimal
	}{{"basic", r.Basic}, {"critical", r.Critical}, {"assistance", r.Assistance},
		{"supplementary", r.Supplementary}, {"backstop", r.Backstop}} {
		if f.v.GreaterThan(rest) {
			fail("%s %s above its base %s", f.name, f.v, rest)
		}
		if f.name == "basic" {
			rest = r.Eligible
		}
		rest = rest.Sub(f.v)
	}
	if r.Hospital.GreaterThan(r.Total.Sub(r.Eligible)) {
		fail("hospital above the out-of-policy amount")
	}
	if b.Kind == KindOutpatient {
		if !r.Deductible.IsZero() || !r.Critical.IsZero() || !r.Assistance.IsZero() || !r.Supplementary.IsZero() ||
			!r.Backstop.IsZero() || !r.Hospital.IsZero() {
			fail("outpatient bill paid by a fund other than basic")
		}
		if c := p.outTiers[b.Tier].perVisitCap; c.Set && r.Basic.GreaterThan(c.Value) {
			fail("per-visit cap exceeded")
		}
	}
	if !isPoor(person.Category) && (!r.Supplementary.IsZero() || !r.Backstop.IsZero() || !r.Hospital.IsZero()) {
		fail("non-poor person got a poor-only fund")
	}
	if _, ok := p.assistance[person.Category]; !ok && !r.Assistance.IsZero() {
		fail("assistance for a category the policy does not list")
	}
}

// checkCaps checks that no annual cap is exceeded by the accumulators.
func checkCaps(t *testing.T, name string, p *Policy, person Person, acc Accumulators) {
	t.Helper()
	check := func(what string, cap Limit, v decimal.Decimal) {
		t.Helper()
		if cap.Set && v.GreaterThan(cap.Value) {
			t.Fatalf("%s: %s %s exceeds the annual cap %s", name, what, v, cap.Value)
		}
	}
	check("outpatient_paid", p.outAnnualCap, acc.OutpatientPaid)
	check("basic_paid", p.basicAnnualCap, acc.BasicPaid)
	if isPoor(person.Category) {
		check("critical_paid", p.critPoorAnnualCap, acc.CriticalPaid)
		check("supplementary_paid", p.suppAnnualCap, acc.SupplementaryPaid)
		check("patient_in_policy", p.annualPatientCap, acc.PatientInPolicy)
	} else {
		check("critical_paid", p.critAnnualCap, acc.CriticalPaid)
	}
	if rule, ok := p.assistance[person.Category]; ok {
		check("assistance_paid", rule.annualCap, acc.AssistancePaid)
	}
	if err := acc.Validate(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
