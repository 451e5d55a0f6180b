package settlement

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/qinba/qinba/internal/apperr"
)

var (
	nonPoor = Person{Category: CategoryNone, Insured: true}
	regPoor = Person{Category: CategoryRegisteredPoor, Insured: true}
	tekun   = Person{Category: CategoryTekun, Insured: true}
	dibao   = Person{Category: CategoryDibao, Insured: true}
)

func emergency(b Bill) Bill { b.Emergency = true; return b }

func referred(dir, prior string, b Bill) Bill {
	b.Referral = &Referral{Direction: dir}
	if prior != "" {
		b.Referral.PriorDeductiblePaid = dec(prior)
	}
	return b
}

// sp builds the expected split: total, eligible, deductible, basic,
// critical, assistance, supplementary, backstop, hospital, patient.
func sp(v ...string) split {
	return split{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]}
}

// TestSettleRules checks each rule of SPEC.md on hand-computed bills (the
// comment of each case gives the arithmetic). Reference policy unless said.
func TestSettleRules(t *testing.T) {
	t.Parallel()
	ref := ReferencePolicy()
	county333 := policyWith(t, func(m map[string]any) { obj(m, "basic", "tiers", "county")["deductible"] = "333.33" })
	cityRate98 := policyWith(t, func(m map[string]any) { obj(m, "basic", "tiers", "city")["rate"] = "0.98" })
	township005 := policyWith(t, func(m map[string]any) {
		obj(m, "basic", "tiers", "township")["rate"] = "0.05"
		obj(m, "basic", "unreferred_rate_penalty")["township"] = "0.10"
	})
	noRegPoorAssist := policyWith(t, func(m map[string]any) { delete(obj(m, "assistance"), "registered_poor") })
	noDibaoAssist := policyWith(t, func(m map[string]any) { delete(obj(m, "assistance"), "dibao") })
	noneAssisted := policyWith(t, func(m map[string]any) {
		obj(m, "assistance")["none"] = map[string]any{"rate": "0.1", "annual_cap": nil}
	})
	noOutCap := policyWith(t, func(m map[string]any) { obj(m, "outpatient")["annual_cap"] = nil })

	tests := []struct {
		name   string
		p      *Policy
		person Person
		acc    Accumulators
		bill   Bill
		want   split
	}{
		// Deductible.
		{"first admission: d 500, basic 9500×0.75", ref, nonPoor, Accumulators{},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "500", "7125", "0", "0", "0", "0", "0", "2875")},
		{"repeat admission: d 500×0.5, basic 9750×0.75", ref, nonPoor, Accumulators{Admissions: 1},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "250", "7312.50", "0", "0", "0", "0", "0", "2687.50")},
		{"poor: d 500×0.5, rate 0.80; assistance 2200×0.6, supplementary 880×0.5", ref, regPoor, Accumulators{},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "250", "7800", "0", "1320", "440", "0", "0", "440")},
		{"poor repeat: d 500×0.5×0.5", ref, regPoor, Accumulators{Admissions: 2},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "125", "7900", "0", "1260", "420", "0", "0", "420")},
		{"referred down: d 0, no penalty", ref, regPoor, Accumulators{},
			referred(DirectionDown, "", inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "0", "8000", "0", "1200", "400", "0", "0", "400")},
		{"referred up, prior covers the deductible: d pos(500−600)", ref, nonPoor, Accumulators{},
			referred(DirectionUp, "600", inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "0", "7500", "0", "0", "0", "0", "0", "2500")},
		{"referred up, poor repeat: d 125−62.50", ref, regPoor, Accumulators{Admissions: 1},
			referred(DirectionUp, "62.50", inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "62.50", "7950", "0", "1230", "410", "0", "0", "410")},
		{"deductible above eligible is reported as eligible", ref, nonPoor, Accumulators{},
			emergency(inpatient(TierCounty, "A", "300")),
			sp("300", "300", "300", "0", "0", "0", "0", "0", "0", "300")},
		{"class B: eligible 1000×0.90", ref, nonPoor, Accumulators{},
			emergency(inpatient(TierCounty, "B", "1000")),
			sp("1000", "900", "500", "300", "0", "0", "0", "0", "0", "700")},
		{"deductible rounds half up: 333.33×0.5 = 166.665 → 166.67; basic 833.33×0.75 = 624.9975 → 625", county333, nonPoor, Accumulators{Admissions: 1},
			emergency(inpatient(TierCounty, "A", "1000")),
			sp("1000", "1000", "166.67", "625", "0", "0", "0", "0", "0", "375")},
		{"unreferred penalty: rate 0.75−0.10", ref, nonPoor, Accumulators{},
			inpatient(TierCounty, "A", "10000"),
			sp("10000", "10000", "500", "6175", "0", "0", "0", "0", "0", "3825")},
		{"no penalty for a tier not listed", ref, nonPoor, Accumulators{},
			inpatient(TierTownship, "A", "10000"),
			sp("10000", "10000", "200", "8820", "0", "0", "0", "0", "0", "1180")},
		{"unreferred penalty with poor bonus: city 0.60+0.05−0.20", ref, regPoor, Accumulators{},
			inpatient(TierCity, "A", "10000"),
			// d 450; basic 9550×0.45 = 4297.50; self-pay 5702.50 < 6000; assistance ×0.6 = 3421.50;
			// supplementary 2281×0.5 = 1140.50; p 1140.50; per-bill max 1000 → backstop 140.50.
			sp("10000", "10000", "450", "4297.50", "0", "3421.50", "1140.50", "140.50", "0", "1000")},

		// Rate clamp.
		{"rate clamped to 1: 0.98+0.05", cityRate98, regPoor, Accumulators{},
			emergency(inpatient(TierCity, "A", "10000")),
			sp("10000", "10000", "450", "9550", "0", "270", "90", "0", "0", "90")},
		{"rate clamped to 0: 0.05−0.10", township005, nonPoor, Accumulators{},
			inpatient(TierTownship, "A", "1000"),
			sp("1000", "1000", "200", "0", "0", "0", "0", "0", "0", "1000")},

		// Critical illness segments.
		{"critical across three segments: 2000×0.60 + 70000×0.65 + 8000×0.75", ref, nonPoor,
			Accumulators{Admissions: 1, BasicPaid: dec("150000"), CriticalBase: dec("40000")},
			emergency(inpatient(TierCounty, "A", "80000")),
			sp("80000", "80000", "250", "0", "52700", "0", "0", "0", "0", "27300")},
		{"critical starting below the threshold: (15000−12000)×0.60", ref, nonPoor,
			Accumulators{BasicPaid: dec("150000"), CriticalBase: dec("5000")},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "500", "0", "1800", "0", "0", "0", "0", "8200")},
		{"critical for the poor: threshold 6000, rate 0.65; backstop 1480−1000", ref, regPoor,
			Accumulators{BasicPaid: dec("150000")},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "250", "0", "2600", "4440", "1480", "480", "0", "1000")},
		{"critical: a null poor cap is no cap", ref, regPoor,
			Accumulators{BasicPaid: dec("150000"), CriticalPaid: dec("1000000")},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "250", "0", "2600", "4440", "1480", "480", "0", "1000")},
		{"critical annual cap bites: 6500 → 10", ref, nonPoor,
			Accumulators{BasicPaid: dec("150000"), CriticalPaid: dec("299990"), CriticalBase: dec("50000")},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "500", "0", "10", "0", "0", "0", "0", "9990")},

		// Caps.
		{"basic annual cap bites: 7125 → 1000", ref, nonPoor, Accumulators{BasicPaid: dec("149000")},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "500", "1000", "0", "0", "0", "0", "0", "9000")},
		{"assistance annual cap bites: 400 → 10; per-bill backstop 195−100", ref, tekun, Accumulators{AssistancePaid: dec("49990")},
			emergency(inpatient(TierCounty, "A", "1000")),
			sp("1000", "1000", "250", "600", "0", "10", "195", "95", "0", "100")},
		{"supplementary annual cap bites: 80 → 0.01", ref, regPoor, Accumulators{SupplementaryPaid: dec("49999.99")},
			emergency(inpatient(TierCounty, "A", "1000")),
			sp("1000", "1000", "250", "600", "0", "240", "0.01", "59.99", "0", "100")},

		// Assistance by category.
		{"category not listed under assistance gets none", noDibaoAssist, dibao, Accumulators{},
			emergency(inpatient(TierCounty, "A", "1000")),
			sp("1000", "1000", "250", "600", "0", "0", "200", "100", "0", "100")},
		{"a policy may assist category none", noneAssisted, nonPoor, Accumulators{},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "500", "7125", "0", "287.50", "0", "0", "0", "2587.50")},

		// Backstop.
		{"backstop per bill and per year: a 17850−10000, b 10000−5000", noRegPoorAssist, regPoor,
			Accumulators{BasicPaid: dec("150000")},
			emergency(inpatient(TierCounty, "A", "100000")),
			sp("100000", "100000", "250", "0", "64300", "0", "17850", "12850", "0", "5000")},
		{"backstop per year: 440 with 200 left of the annual patient cap", ref, regPoor,
			Accumulators{PatientInPolicy: dec("4800")},
			emergency(inpatient(TierCounty, "A", "10000")),
			sp("10000", "10000", "250", "7800", "0", "1320", "440", "240", "0", "200")},

		// Out-of-policy cost.
		{"hospital bears out-of-policy cost above 10% of total for the poor", ref, regPoor, Accumulators{},
			emergency(inpatient(TierCounty, "A", "1000", "C", "500")),
			sp("1500", "1000", "250", "600", "0", "240", "80", "0", "350", "230")},
		{"non-poor pays out-of-policy cost", ref, nonPoor, Accumulators{},
			emergency(inpatient(TierCounty, "A", "1000", "C", "500")),
			sp("1500", "1000", "500", "375", "0", "0", "0", "0", "0", "1125")},

		// Uninsured.
		{"uninsured pays the total", ref, Person{Category: CategoryRegisteredPoor}, Accumulators{},
			emergency(inpatient(TierCounty, "A", "1000", "C", "500")),
			sp("1500", "1000", "0", "0", "0", "0", "0", "0", "0", "1500")},
		{"uninsured outpatient", ref, Person{Category: CategoryNone}, Accumulators{},
			outpatient(TierVillage, "A", "100"),
			sp("100", "100", "0", "0", "0", "0", "0", "0", "0", "100")},

		// Outpatient.
		{"outpatient annual cap bites: 100 → 50 → 10", ref, nonPoor, Accumulators{OutpatientPaid: dec("390")},
			outpatient(TierTownship, "A", "200"),
			sp("200", "200", "0", "10", "0", "0", "0", "0", "0", "190")},
		{"outpatient annual cap used up", ref, nonPoor, Accumulators{OutpatientPaid: dec("400")},
			outpatient(TierTownship, "A", "200"),
			sp("200", "200", "0", "0", "0", "0", "0", "0", "0", "200")},
		{"outpatient per-visit cap bites", ref, regPoor, Accumulators{},
			outpatient(TierVillage, "A", "100"),
			sp("100", "100", "0", "30", "0", "0", "0", "0", "0", "70")},
		{"outpatient under caps", ref, nonPoor, Accumulators{},
			outpatient(TierVillage, "A", "20"),
			sp("20", "20", "0", "12", "0", "0", "0", "0", "0", "8")},
		{"outpatient rounds half up: 40.95×0.5 = 20.475", ref, nonPoor, Accumulators{},
			outpatient(TierTownship, "B", "45.50"),
			sp("45.50", "40.95", "0", "20.48", "0", "0", "0", "0", "0", "25.02")},
		{"outpatient null annual cap", noOutCap, nonPoor, Accumulators{OutpatientPaid: dec("10000")},
			outpatient(TierVillage, "A", "100"),
			sp("100", "100", "0", "30", "0", "0", "0", "0", "0", "70")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, acc, err := tt.p.Settle(tt.person, tt.acc, tt.bill)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			for _, f := range []*string{&want.Total, &want.Eligible, &want.Deductible, &want.Basic, &want.Critical,
				&want.Assistance, &want.Supplementary, &want.Backstop, &want.Hospital, &want.Patient} {
				*f = FormatMoney(dec(*f))
			}
			if got := splitOf(r); got != want {
				t.Errorf("split\n got %+v\nwant %+v", got, want)
			}
			if !acc.Equal(tt.acc.Add(r.Delta)) {
				t.Errorf("accumulators %+v, want acc + delta", acc)
			}
			if !tt.person.Insured && !acc.Equal(tt.acc) {
				t.Errorf("uninsured changed the accumulators: %+v", acc)
			}
		})
	}
}

func TestSettleAccumulators(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	start := Accumulators{BasicPaid: dec("150000"), OutpatientPaid: dec("7")}
	_, acc, err := p.Settle(regPoor, start, emergency(inpatient(TierCounty, "A", "10000")))
	if err != nil {
		t.Fatal(err)
	}
	want := Accumulators{Admissions: 1, OutpatientPaid: dec("7"), BasicPaid: dec("150000"), CriticalBase: dec("10000"),
		CriticalPaid: dec("2600"), AssistancePaid: dec("4440"), SupplementaryPaid: dec("1480"),
		BackstopPaid: dec("480"), PatientInPolicy: dec("1000")}
	if !acc.Equal(want) {
		t.Errorf("got %+v\nwant %+v", acc, want)
	}
	_, acc2, err := p.Settle(regPoor, acc, outpatient(TierVillage, "A", "10"))
	if err != nil {
		t.Fatal(err)
	}
	want.OutpatientPaid = dec("13")
	if !acc2.Equal(want) {
		t.Errorf("outpatient: got %+v\nwant %+v", acc2, want)
	}
}

func TestSettleRejects(t *testing.T) {
	t.Parallel()
	p := policyWith(t, func(m map[string]any) { delete(obj(m, "basic", "tiers"), "city") })
	good := inpatient(TierCounty, "A", "10")
	tests := []struct {
		name           string
		person         Person
		acc            Accumulators
		edit           func(b *Bill)
		field, message string
	}{
		{"category", Person{Category: "rich"}, Accumulators{}, func(*Bill) {}, "person.category", "bad category 'rich'"},
		{"kind", nonPoor, Accumulators{}, func(b *Bill) { b.Kind = "dental" }, "kind", "bad kind 'dental'"},
		{"tier of the other kind", nonPoor, Accumulators{}, func(b *Bill) { b.Tier = TierVillage }, "tier", "unknown inpatient tier 'village'"},
		{"tier the policy does not list", nonPoor, Accumulators{}, func(b *Bill) { b.Tier = TierCity }, "tier", "unknown inpatient tier 'city'"},
		{"outpatient tier", nonPoor, Accumulators{}, func(b *Bill) { b.Kind, b.Tier = KindOutpatient, TierCounty }, "tier", "unknown outpatient tier 'county'"},
		{"direction", nonPoor, Accumulators{}, func(b *Bill) { b.Referral = &Referral{Direction: "sideways"} }, "referral.direction", "bad referral direction 'sideways'"},
		{"prior", nonPoor, Accumulators{}, func(b *Bill) { b.Referral = &Referral{Direction: DirectionUp, PriorDeductiblePaid: dec("-1")} }, "referral.prior_deductible_paid", "bad amount '-1'"},
		{"no lines", nonPoor, Accumulators{}, func(b *Bill) { b.Lines = nil }, "lines", "bill has no lines"},
		{"class", nonPoor, Accumulators{}, func(b *Bill) { b.Lines = append(b.Lines, Line{Class: "D"}) }, "lines[1].class", "bad class 'D'"},
		{"negative amount", nonPoor, Accumulators{}, func(b *Bill) { b.Lines[0].Amount = dec("-5.00") }, "lines[0].amount", "bad amount '-5'"},
		{"tenths of fen", nonPoor, Accumulators{}, func(b *Bill) { b.Lines[0].Amount = dec("10.005") }, "lines[0].amount", "bad amount '10.005'"},
		{"negative accumulator", nonPoor, Accumulators{BackstopPaid: dec("-0.01")}, func(*Bill) {}, "accumulators.backstop_paid", "negative accumulator"},
		{"negative admissions", nonPoor, Accumulators{Admissions: -1}, func(*Bill) {}, "accumulators.admissions", "negative accumulator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := good
			b.Lines = append([]Line(nil), good.Lines...)
			tt.edit(&b)
			_, acc, err := p.Settle(tt.person, tt.acc, b)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || ve.Message != tt.message {
				t.Fatalf("got %v, want %s: %s", err, tt.field, tt.message)
			}
			if !acc.Equal(tt.acc) {
				t.Error("accumulators changed on error")
			}
			if !apperr.Is(err, apperr.Invalid) {
				t.Error("not an apperr Invalid")
			}
		})
	}
	// An amount with trailing zeros past the fen is still a whole number of fen.
	b := good
	b.Lines = []Line{{Class: ClassA, Amount: dec("10.500")}}
	if _, _, err := p.Settle(nonPoor, Accumulators{}, b); err != nil {
		t.Errorf("10.500: %v", err)
	}
	// Referral fields of an outpatient bill are ignored.
	o := outpatient(TierVillage, "A", "10")
	o.Referral = &Referral{Direction: "sideways"}
	if _, _, err := p.Settle(nonPoor, Accumulators{}, o); err != nil {
		t.Errorf("outpatient referral: %v", err)
	}
}

func TestReverse(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	start := Accumulators{Admissions: 1, BasicPaid: dec("100"), PatientInPolicy: dec("10")}
	r, acc, err := p.Settle(regPoor, start, inpatient(TierCity, "A", "20000", "B", "3000.55", "C", "800"))
	if err != nil {
		t.Fatal(err)
	}
	rr, back, err := Reverse(r, acc)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(start) {
		t.Errorf("accumulators after reversal %+v, want %+v", back, start)
	}
	if !rr.Reversal || !rr.Trace.Reversal || rr.BillID != r.BillID {
		t.Error("reversal not marked")
	}
	if !rr.Total.Equal(r.Total.Neg()) || !rr.Patient.Equal(r.Patient.Neg()) || !rr.Hospital.Equal(r.Hospital.Neg()) ||
		!rr.Deductible.Equal(r.Deductible.Neg()) || !rr.Critical.Equal(r.Critical.Neg()) {
		t.Errorf("reversal split %+v", splitOf(rr))
	}
	data, err := json.Marshal(rr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "-0.00") {
		t.Errorf("reversal JSON has -0.00: %s", data)
	}
	if !strings.Contains(string(data), `"total":"-23800.55"`) {
		t.Errorf("reversal JSON: %s", data)
	}
	if _, a2, err := Reverse(rr, back); !errors.Is(err, ErrReverseReversal) || !a2.Equal(back) {
		t.Errorf("reversing a reversal: %v", err)
	}
	if _, a2, err := Reverse(r, back); !errors.Is(err, ErrAccumulatorMismatch) || !a2.Equal(back) {
		t.Errorf("reversing twice: %v", err)
	}
	if !apperr.Is(ErrAccumulatorMismatch, apperr.Conflict) {
		t.Error("ErrAccumulatorMismatch is not a conflict")
	}
}

func TestTrace(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	r, _, err := p.Settle(regPoor, Accumulators{Admissions: 1, BasicPaid: dec("149000")},
		referred(DirectionUp, "50", inpatient(TierCounty, "A", "9000", "B", "1000", "C", "500")))
	if err != nil {
		t.Fatal(err)
	}
	tr := r.Trace
	if tr.Policy != ReferencePolicyID || !tr.Poor || !tr.Insured || len(tr.Classes) != 3 {
		t.Fatalf("trace header %+v", tr)
	}
	funds := []string{FundDeductible, FundBasic, FundCritical, FundAssistance, FundSupplementary, FundBackstop, FundHospital}
	if len(tr.Steps) != len(funds) {
		t.Fatalf("%d steps", len(tr.Steps))
	}
	amounts := map[string]string{
		FundDeductible: FormatMoney(r.Deductible), FundBasic: FormatMoney(r.Basic), FundCritical: FormatMoney(r.Critical),
		FundAssistance: FormatMoney(r.Assistance), FundSupplementary: FormatMoney(r.Supplementary),
		FundBackstop: FormatMoney(r.Backstop), FundHospital: FormatMoney(r.Hospital),
	}
	for i, st := range tr.Steps {
		if st.Fund != funds[i] || st.Label.ZH == "" || st.Label.EN == "" || !st.Applies {
			t.Errorf("step %d: %+v", i, st)
		}
		if st.Amount.String() != amounts[st.Fund] {
			t.Errorf("%s: trace amount %s, result %s", st.Fund, st.Amount, amounts[st.Fund])
		}
		for _, c := range st.Caps {
			if c.Label.ZH == "" || c.Label.EN == "" {
				t.Errorf("%s: cap %s without labels", st.Fund, c.Code)
			}
		}
	}
	// Deductible 500 × 0.5 (repeat) × 0.5 (poor) − 50 = 75.
	ded := tr.Steps[0]
	if len(ded.Derivation) != 4 || ded.Derivation[3].Result.String() != "75" || ded.Amount.String() != "75.00" {
		t.Errorf("deductible derivation %+v", ded.Derivation)
	}
	// Basic: (9900 − 75) × 0.80 = 7860, capped to 1000 by the annual cap.
	basic := tr.Steps[1]
	if basic.Computed.String() != "7860.00" || !basic.Capped || !basic.Caps[0].Bit || basic.Caps[0].Remaining.Value.String() != "1000" ||
		basic.Rate == nil || basic.Rate.String() != "0.8" {
		t.Errorf("basic step %+v", basic)
	}
	if tr.Patient.String() != FormatMoney(r.Patient) {
		t.Errorf("trace patient %s", tr.Patient)
	}
	if !tr.PatientInPolicy.Add(tr.PatientOutOfPolicy.Decimal).Equal(r.Patient) {
		t.Error("patient in + out of policy != patient")
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	steps := back["trace"].(map[string]any)["steps"].([]any)
	st1 := steps[1].(map[string]any)
	if st1["base"] != "9825.00" || st1["amount"] != "1000.00" || st1["rate"] != "0.8" || st1["capped"] != true {
		t.Errorf("basic step JSON %v", st1)
	}
	if lbl := st1["label"].(map[string]any); lbl["zh"] == "" || lbl["en"] == "" {
		t.Errorf("labels %v", lbl)
	}
	// Non-poor: poor-only steps are present but not applied, with a reason.
	r2, _, err := p.Settle(nonPoor, Accumulators{}, emergency(inpatient(TierCounty, "A", "100")))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range r2.Trace.Steps[3:] {
		if st.Applies || st.Reason.EN == "" || !st.Amount.IsZero() {
			t.Errorf("non-poor step %+v", st)
		}
	}
}

func TestAccumulatorsJSON(t *testing.T) {
	t.Parallel()
	a := Accumulators{Admissions: 2, BasicPaid: dec("12.5"), CriticalBase: dec("100.25"), PatientInPolicy: dec("0.01")}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var b Accumulators
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) {
		t.Errorf("round trip %s → %+v", data, b)
	}
	if err := json.Unmarshal([]byte(`{"basic_paid": 12}`), &b); err == nil {
		t.Error("accepted a JSON number")
	}
}

func TestMoney(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0", "12", "12.5", "12.50", "007.10", "123456789012345678901234567890.99"} {
		if _, ok := ParseAmount(s); !ok {
			t.Errorf("ParseAmount(%q) refused", s)
		}
	}
	for _, s := range []string{"", "-1", "1e3", ".5", "12.", "1.005", "+1", " 1", "1 ", "1,5", "0x10", "１", "NaN", "1.2.3"} {
		if _, ok := ParseAmount(s); ok {
			t.Errorf("ParseAmount(%q) accepted", s)
		}
	}
	for in, want := range map[string]string{"0": "0.00", "-0.001": "0.00", "-0.004": "0.00", "-0.005": "-0.01",
		"1.005": "1.01", "2.675": "2.68", "-12.5": "-12.50", "1234.5": "1234.50"} {
		if got := FormatMoney(dec(in)); got != want {
			t.Errorf("FormatMoney(%s) = %s, want %s", in, got, want)
		}
	}
	if got := FormatMoney(dec("0").Neg()); got != "0.00" {
		t.Errorf("-0 = %s", got)
	}
	var m Money
	if err := json.Unmarshal([]byte(`"-12.50"`), &m); err != nil || m.String() != "-12.50" {
		t.Errorf("Money unmarshal: %v %s", err, m)
	}
	if err := json.Unmarshal([]byte(`12.5`), &m); err == nil {
		t.Error("Money accepted a JSON number")
	}
	if b, _ := json.Marshal(Exact{dec("0.750")}); string(b) != `"0.75"` {
		t.Errorf("Exact = %s", b)
	}
	if b, _ := json.Marshal(Limit{}); string(b) != "null" {
		t.Errorf("no limit = %s", b)
	}
}

// TestSumLinesSlowPath checks that amounts too large for the int64 fast
// path are summed exactly.
func TestSumLinesSlowPath(t *testing.T) {
	t.Parallel()
	lines := []Line{{ClassA, dec("1.5")}, {ClassB, dec("12345678901234567890.99")}, {ClassA, dec("0.01")},
		{ClassB, dec("1")}, {ClassC, dec("7")}}
	sums, present := sumLines(lines)
	want := []string{"1.51", "12345678901234567891.99", "7"}
	for k := range 3 {
		if !present[k] || !sums[k].Equal(dec(want[k])) {
			t.Errorf("class %d: %s, want %s", k, sums[k], want[k])
		}
	}
	sums, present = sumLines(lines[:1])
	if !sums[0].Equal(dec("1.5")) || present[1] || present[2] {
		t.Errorf("fast path: %v %v", sums, present)
	}
	p := ReferencePolicy()
	r, _, err := p.Settle(regPoor, Accumulators{}, Bill{Kind: KindInpatient, Tier: TierCity, Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Total.Equal(dec("12345678901234567900.50")) {
		t.Errorf("total %s", r.Total)
	}
}
