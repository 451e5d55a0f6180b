package settlement

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/internal/apperr"
)

func TestCheckInput(t *testing.T) {
	t.Parallel()
	now := time.Date(2020, 1, 10, 12, 0, 0, 0, time.UTC)
	ok := func() BillInput {
		return BillInput{PersonID: 1, Kind: KindInpatient, AdmittedOn: "2019-03-01", DischargedOn: "2019-03-05",
			Lines: []LineInput{{ItemCode: "A1", Name: "床位费", Class: "A", Quantity: "4", UnitPrice: "30", Amount: "120.00"}}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*BillInput)
		field string // "" when valid
	}{
		{"valid", func(*BillInput) {}, ""},
		{"computed amount", func(b *BillInput) { b.Lines[0].Amount = "" }, ""},
		{"fractional quantity and price", func(b *BillInput) {
			b.Lines[0].Quantity, b.Lines[0].UnitPrice, b.Lines[0].Amount = "2.5", "0.125", "0.31"
		}, ""},
		{"outpatient", func(b *BillInput) {
			b.Kind, b.AdmittedOn, b.DischargedOn, b.VisitOn = KindOutpatient, "", "", "2019-03-01"
		}, ""},
		{"no person", func(b *BillInput) { b.PersonID = 0 }, "person_id"},
		{"bad kind", func(b *BillInput) { b.Kind = "daycare" }, "kind"},
		{"discharged before admitted", func(b *BillInput) { b.DischargedOn = "2019-02-01" }, "discharged_on"},
		{"future", func(b *BillInput) { b.DischargedOn = "2020-01-11" }, "discharged_on"},
		{"bad date", func(b *BillInput) { b.AdmittedOn = "2019-02-30" }, "admitted_on"},
		{"visit on a stay", func(b *BillInput) { b.VisitOn = "2019-03-01" }, "visit_on"},
		{"outpatient emergency", func(b *BillInput) {
			b.Kind, b.AdmittedOn, b.DischargedOn, b.VisitOn, b.Emergency = KindOutpatient, "", "", "2019-03-01", true
		}, "emergency"},
		{"outpatient referral", func(b *BillInput) {
			b.Kind, b.AdmittedOn, b.DischargedOn, b.VisitOn, b.ReferralID = KindOutpatient, "", "", "2019-03-01", 3
		}, "referral_id"},
		{"no lines", func(b *BillInput) { b.Lines = nil }, "lines"},
		{"bad class", func(b *BillInput) { b.Lines[0].Class = "甲" }, "lines[0].class"},
		{"negative quantity", func(b *BillInput) { b.Lines[0].Quantity = "-1" }, "lines[0].quantity"},
		{"zero quantity", func(b *BillInput) { b.Lines[0].Quantity = "0" }, "lines[0].quantity"},
		{"exponent", func(b *BillInput) { b.Lines[0].UnitPrice = "1e3" }, "lines[0].unit_price"},
		{"amount mismatch", func(b *BillInput) { b.Lines[0].Amount = "120.01" }, "lines[0].amount"},
		{"amount with 3 decimals", func(b *BillInput) { b.Lines[0].Amount = "120.000" }, "lines[0].amount"},
		{"empty name", func(b *BillInput) { b.Lines[0].Name = " " }, "lines[0].name"},
		{"control character", func(b *BillInput) { b.Lines[0].ItemCode = "A\x001" }, "lines[0].item_code"},
		{"bad external number", func(b *BillInput) { b.ExternalNo = "a b" }, "external_no"},
	} {
		in := ok()
		tc.edit(&in)
		d, probs := checkInput(&in, now)
		switch {
		case tc.field == "" && len(probs) > 0:
			t.Errorf("%s: %v", tc.name, probs)
		case tc.field == "" && d == nil:
			t.Errorf("%s: no draft", tc.name)
		case tc.field != "" && (len(probs) == 0 || probs[0].Field != tc.field):
			t.Errorf("%s: problems %v, want one on %s", tc.name, probs, tc.field)
		}
	}
	// The computed amount and the total.
	in := ok()
	in.Lines = append(in.Lines, LineInput{ItemCode: "B", Name: "药", Class: "B", Quantity: "3", UnitPrice: "0.335"})
	d, _ := checkInput(&in, now)
	if d.Lines[1].Amt.String() != "1.01" || d.Total.String() != "121.01" || !d.Date.Equal(time.Date(2019, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("draft %+v", d)
	}
	// The content hash ignores how numbers are written, not what they are.
	in2 := in
	in2.Lines = []LineInput{{ItemCode: "A1", Name: "床位费", Class: "A", Quantity: "4.0", UnitPrice: "30.00"}, in.Lines[1]}
	d2, _ := checkInput(&in2, now)
	if d.hash() != d2.hash() {
		t.Fatal("equal bills hash differently")
	}
	in2.Lines[0].Quantity = "5"
	if d3, _ := checkInput(&in2, now); d3.hash() == d.hash() {
		t.Fatal("different bills hash alike")
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	p, err := reg.InForce("420626", time.Date(2019, 7, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || p.ID() != ReferencePolicyID {
		t.Fatalf("in force: %v %v", p, err)
	}
	for _, c := range []struct {
		region string
		day    time.Time
	}{{"420626", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}, {"420600", time.Date(2019, 7, 1, 0, 0, 0, 0, time.UTC)}} {
		if _, err := reg.InForce(c.region, c.day); !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), c.region) {
			t.Errorf("%s %s: %v", c.region, c.day.Format(time.DateOnly), err)
		}
	}
	next := policyWith(t, func(m map[string]any) {
		m["id"], m["valid_from"], m["valid_to"] = "baokang-2020", "2020-01-01", "2020-12-31"
	})
	reg, err = NewRegistry(next, ReferencePolicy()) // a copy of an embedded policy is fine
	if err != nil {
		t.Fatal(err)
	}
	if p, err := reg.InForce("420626", time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)); err != nil || p.ID() != "baokang-2020" {
		t.Fatalf("2020: %v %v", p, err)
	}
	overlap := policyWith(t, func(m map[string]any) { m["id"], m["valid_from"] = "baokang-2019b", "2019-07-01" })
	if _, err := NewRegistry(overlap); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("overlap: %v", err)
	}
	same := policyWith(t, func(m map[string]any) { m["name"] = "changed" })
	if _, err := NewRegistry(same); err == nil || !strings.Contains(err.Error(), "id") {
		t.Fatalf("two policies with one id: %v", err)
	}
	if _, err := LoadRegistry(t.TempDir() + "/missing"); err == nil {
		t.Fatal("a missing directory loads")
	}
}

// A stored result read back and written again is the same JSON, so that a
// settlement can be reversed (and a retried request answered) from what
// is stored.
func TestResultJSONRoundTrip(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	rng := rand.New(rand.NewPCG(1, 2))
	cats := []string{CategoryNone, CategoryRegisteredPoor, CategoryDibao, CategoryTekun}
	var acc Accumulators
	for i := range 200 {
		b := inpatient([]string{TierTownship, TierCounty, TierCity}[i%3], "A", decimal.New(int64(rng.IntN(5_000_000)), -2).String(),
			"B", decimal.New(int64(rng.IntN(2_000_000)), -2).String(), "C", decimal.New(int64(rng.IntN(300_000)), -2).String())
		if i%4 == 0 {
			b = outpatient([]string{TierVillage, TierTownship}[i%2], "A", "35.50", "C", "3")
		}
		if i%5 == 1 {
			b.Referral = &Referral{Direction: DirectionUp, PriorDeductiblePaid: dec("50")}
		}
		r, next, err := p.Settle(Person{Category: cats[i%4], Insured: i%9 != 0}, acc, b)
		if err != nil {
			t.Fatal(err)
		}
		acc = next
		for _, res := range []Result{r, mustReverse(t, r, acc)} {
			js, _ := json.Marshal(res)
			var back Result
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			js2, _ := json.Marshal(back)
			same := back.Delta.Equal(res.Delta)
			for k, a := range back.Payers() {
				same = same && a.Equal(res.Payers()[k])
			}
			if string(js) != string(js2) || !same {
				t.Fatalf("round trip differs:\n%s\n%s", js, js2)
			}
		}
	}
}

func mustReverse(t *testing.T, r Result, acc Accumulators) Result {
	t.Helper()
	rev, _, err := Reverse(r, acc)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestPostingDate(t *testing.T) {
	t.Parallel()
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	for _, c := range []struct {
		date    string
		cleared []string
		want    string
	}{
		{"2019-11-20", nil, "2019-11-20"},
		{"2019-11-20", []string{"2019-12-01"}, "2019-11-20"},
		{"2019-11-20", []string{"2019-11-01"}, "2019-12-01"},
		{"2019-11-20", []string{"2019-11-01", "2019-12-01", "2020-02-01"}, "2020-01-01"},
		{"2019-12-31", []string{"2019-12-01"}, "2020-01-01"},
	} {
		var cl []time.Time
		for _, s := range c.cleared {
			cl = append(cl, d(s))
		}
		if got := postingDate(d(c.date), cl); !got.Equal(d(c.want)) {
			t.Errorf("%s cleared %v: %s, want %s", c.date, c.cleared, got.Format(time.DateOnly), c.want)
		}
	}
}

// Every entry balances, for settlements and their reversals, and the
// patient's and each fund's account move by their share.
func TestJournalLinesBalance(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		b := inpatient(TierCounty, "A", decimal.New(int64(rng.IntN(20_000_000)), -2).String(), "C", decimal.New(int64(rng.IntN(900_000)), -2).String())
		r, acc, err := p.Settle(Person{Category: []string{CategoryNone, CategoryTekun}[i%2], Insured: true}, Accumulators{}, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range []Result{r, mustReverse(t, r, acc)} {
			var dr, cr decimal.Decimal
			net := map[string]decimal.Decimal{}
			for _, l := range JournalLines(&res) {
				if (l.Debit.Sign() > 0) == (l.Credit.Sign() > 0) {
					t.Fatalf("line %+v", l)
				}
				dr, cr = dr.Add(l.Debit), cr.Add(l.Credit)
				net[l.Account] = net[l.Account].Add(l.Debit).Sub(l.Credit)
			}
			if !dr.Equal(cr) || !dr.Equal(res.Total.Abs()) {
				t.Fatalf("entry %s / %s for total %s", dr, cr, res.Total)
			}
			for k, amt := range res.Payers() {
				if !net[AccountOf(Payers[k])].Equal(amt) {
					t.Fatalf("%s: journal %s, split %s", Payers[k], net[AccountOf(Payers[k])], amt)
				}
			}
		}
	}
}

// The hand-written encoder of results gives json.Marshal's bytes exactly.
func TestFastResultJSON(t *testing.T) {
	t.Parallel()
	p := ReferencePolicy()
	rng := rand.New(rand.NewPCG(5, 6))
	cats := []string{CategoryNone, CategoryRegisteredPoor, CategoryDibao, CategoryTekun}
	ids := []string{"b", "42", "a<b>&\"c\"\\", "行\u2028\u2029\x01\xff", ""}
	var acc Accumulators
	for i := range 3000 {
		var b Bill
		switch i % 5 {
		case 0:
			b = outpatient([]string{TierVillage, TierTownship}[i%2], "A", decimal.New(int64(rng.IntN(20000)), -2).String(), "B", "7.77")
		default:
			b = inpatient([]string{TierTownship, TierCounty, TierCity}[i%3], "A", decimal.New(int64(rng.IntN(30_000_000)), -2).String(),
				"B", decimal.New(int64(rng.IntN(5_000_000)), -2).String(), "C", decimal.New(int64(rng.IntN(900_000)), -2).String())
			b.Emergency = i%7 == 0
			switch i % 3 {
			case 1:
				b.Referral = &Referral{Direction: DirectionUp, PriorDeductiblePaid: decimal.New(int64(rng.IntN(60000)), -2)}
			case 2:
				b.Referral = &Referral{Direction: DirectionDown}
			}
		}
		b.ID = ids[i%len(ids)]
		if i%50 == 0 {
			acc = Accumulators{}
		}
		r, next, err := p.Settle(Person{Category: cats[rng.IntN(4)], Insured: i%11 != 0}, acc, b)
		if err != nil {
			t.Fatal(err)
		}
		acc = next
		for _, res := range []Result{r, mustReverse(t, r, acc)} {
			want, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendResultJSON(nil, &res); string(got) != string(want) {
				t.Fatalf("bill %d:\nfast %s\njson %s", i, got, want)
			}
		}
	}
}
