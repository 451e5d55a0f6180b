package settlement

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
)

func month(s string) time.Time {
	t, err := ParsePeriod(s)
	if err != nil {
		panic(err)
	}
	return t
}

// The clearing is what each fund owes for the month: settlements minus
// reversals posted in it; a facility is cleared once per month; what is
// posted after its month was cleared goes into the next open month.
func TestClearing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tCounty)
	admin := b.user(t, auth.RoleAdmin, tCounty)
	poor := b.person(t, tVillage, CategoryTekun, 2019)
	bill1 := b.newBill(t, clerk, inpatientInput(poor, "", "2019-11-01", "2019-11-05", line("A", "9000"), line("B", "2000"), line("C", "700")))
	bill2 := b.newBill(t, clerk, inpatientInput(poor, "", "2019-11-10", "2019-11-12", line("A", "3000")))
	s1, err := b.svc.Settle(b.ctx, clerk, bill1, SettleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.svc.Settle(b.ctx, clerk, bill2, SettleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Reverse(b.ctx, clerk, s2.Settlement.ID, ReverseRequest{Reason: "退费", Date: "2019-11-20"}, ""); err != nil {
		t.Fatal(err)
	}
	// Another facility's postings are not this facility's.
	tclerk := b.user(t, auth.RoleBillingClerk, tTownship)
	tb := b.newBill(t, tclerk, outpatientInput(poor, "", "2019-11-03", line("A", "40")))
	if _, err := b.svc.Settle(b.ctx, tclerk, tb, SettleOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := b.svc.RunClearing(b.ctx, clerk, month("2019-11"), tTownship); !apperr.Is(err, apperr.Forbidden) {
		t.Fatalf("a clerk clears another facility: %v", err)
	}
	if _, err := b.svc.RunClearing(b.ctx, clerk, today(time.Now()), ""); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("this month: %v", err)
	}
	run, err := b.svc.RunClearing(b.ctx, clerk, month("2019-11"), "")
	if err != nil {
		t.Fatal(err)
	}
	r1 := resultOf(t, s1.Settlement)
	if len(run.Facilities) != 1 || run.Facilities[0].Facility != tCounty || run.Facilities[0].Settlements != 2 || run.Facilities[0].Reversals != 1 {
		t.Fatalf("run %+v", run.Facilities)
	}
	want := map[string]string{FundBasic: FormatMoney(r1.Basic), FundCritical: FormatMoney(r1.Critical), FundAssistance: FormatMoney(r1.Assistance),
		FundSupplementary: FormatMoney(r1.Supplementary), FundBackstop: FormatMoney(r1.Backstop)}
	for _, f := range run.Facilities[0].Funds {
		if f.Amount.String() != want[f.Fund] {
			t.Errorf("%s owes %s, want %s", f.Fund, f.Amount, want[f.Fund])
		}
	}
	if _, err := b.svc.RunClearing(b.ctx, clerk, month("2019-11"), ""); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("twice: %v", err)
	}
	// The admin clears what is left of the region: the township.
	run2, err := b.svc.RunClearing(b.ctx, admin, month("2019-11"), "")
	if err != nil || len(run2.Facilities) != 1 || run2.Facilities[0].Facility != tTownship {
		t.Fatalf("region run: %+v %v", run2, err)
	}
	if _, err := b.svc.RunClearing(b.ctx, admin, month("2019-11"), ""); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("region twice: %v", err)
	}
	// Late: a November bill settled now, and the reversal of a November
	// settlement dated in November, are posted on December 1st.
	bill3 := b.newBill(t, clerk, inpatientInput(poor, "", "2019-11-20", "2019-11-22", line("A", "500")))
	s3, err := b.svc.Settle(b.ctx, clerk, bill3, SettleOptions{})
	if err != nil || s3.Settlement.PostedOn != "2019-12-01" {
		t.Fatalf("late settlement posted %v: %v", s3.Settlement.PostedOn, err)
	}
	rev, err := b.svc.Reverse(b.ctx, clerk, s1.Settlement.ID, ReverseRequest{Reason: "更正", Date: "2019-11-30"}, "")
	if err != nil || rev.Settlement.PostedOn != "2019-12-01" {
		t.Fatalf("late reversal posted %v: %v", rev.Settlement.PostedOn, err)
	}
	dec, err := b.svc.RunClearing(b.ctx, nil, month("2019-12"), tCounty)
	if err != nil {
		t.Fatal(err)
	}
	r3 := resultOf(t, s3.Settlement)
	if f := dec.Facilities[0]; f.Settlements != 1 || f.Reversals != 1 || f.Owed.String() != FormatMoney(r3.Basic.Add(r3.Critical).Add(r3.Assistance).Add(r3.Supplementary).Add(r3.Backstop).
		Sub(r1.Basic.Add(r1.Critical).Add(r1.Assistance).Add(r1.Supplementary).Add(r1.Backstop))) {
		t.Fatalf("December %+v", f)
	}
	// The CSV: one row per facility and fund.
	var buf bytes.Buffer
	if err := run.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 1+len(Funds) || recs[1][0] != "2019-11" || recs[1][1] != tCounty || recs[1][3] != FundBasic {
		t.Fatalf("csv %v %v", recs, err)
	}
	// Reading: the township's clerk does not see the county's run.
	if _, err := b.svc.GetClearing(b.ctx, tclerk, run.ID); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("other clerk reads: %v", err)
	}
	if got, err := b.svc.GetClearing(b.ctx, admin, run.ID); err != nil || got.Owed.String() != run.Owed.String() {
		t.Fatalf("admin reads: %v", err)
	}
	b.verify(t)
}

// The statement lists every bill of every member with each payer's share
// of the settlement in force; the totals count settled bills only.
func TestHouseholdStatement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tCounty)
	hh := b.household(t, tVillage, CategoryDibao)
	head := b.member(t, hh, "head", 2019)
	child := b.member(t, hh, "child", 2019)
	if _, err := b.owner.Exec(b.ctx, `UPDATE person SET name = '<script>x</script>' WHERE id = $1`, child); err != nil {
		t.Fatal(err)
	}
	bills := []int64{
		b.newBill(t, clerk, inpatientInput(head, "", "2019-02-01", "2019-02-09", line("A", "6000"), line("C", "300"))),
		b.newBill(t, clerk, inpatientInput(child, "", "2019-04-01", "2019-04-03", line("A", "1500"))),
		b.newBill(t, clerk, inpatientInput(child, "", "2019-06-01", "2019-06-03", line("A", "800"))), // reversed
		b.newBill(t, clerk, inpatientInput(child, "", "2019-07-01", "2019-07-03", line("A", "700"))), // open
		b.newBill(t, clerk, inpatientInput(head, "", "2018-07-01", "2018-07-03", line("A", "700"))),  // another year
	}
	var patient, funds string
	var sum Split
	for i, id := range bills[:3] {
		out, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if _, err := b.svc.Reverse(b.ctx, clerk, out.Settlement.ID, ReverseRequest{Reason: "x"}, ""); err != nil {
				t.Fatal(err)
			}
			continue
		}
		r := resultOf(t, out.Settlement)
		sum.add(&Split{Total: M(r.Total), Eligible: M(r.Eligible), Basic: M(r.Basic), Critical: M(r.Critical), Assistance: M(r.Assistance),
			Supplementary: M(r.Supplementary), Backstop: M(r.Backstop), Hospital: M(r.Hospital), Patient: M(r.Patient)})
	}
	patient = sum.Patient.String()
	funds = FormatMoney(sum.Basic.Add(sum.Critical.Decimal).Add(sum.Assistance.Decimal).Add(sum.Supplementary.Decimal).Add(sum.Backstop.Decimal))

	st, err := b.svc.HouseholdStatement(b.ctx, clerk, hh, 2019)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bills) != 4 || st.Totals.Bills != 4 || st.Totals.Settled != 2 || st.Totals.Patient.String() != patient || st.Totals.Funds.String() != funds {
		t.Fatalf("statement %+v", st.Totals)
	}
	if st.Bills[2].Status != StatusReversed || !st.Bills[2].Total.IsZero() || st.Bills[3].Status != StatusOpen {
		t.Fatalf("bills %+v", st.Bills)
	}
	if len(st.Members) != 2 || !strings.Contains(st.Members[0].NationalID, "********") {
		t.Fatalf("members %+v", st.Members)
	}
	var buf bytes.Buffer
	if err := st.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	if strings.Contains(html, "<script>") || !strings.Contains(html, "&lt;script&gt;") || !strings.Contains(html, patient) {
		t.Fatalf("html not escaped or incomplete")
	}
	// The page's policy allows exactly its style.
	i, j := strings.Index(html, "<style>")+len("<style>"), strings.Index(html, "</style>")
	h := sha256.Sum256([]byte(html[i:j]))
	if !strings.Contains(StatementCSP, base64.StdEncoding.EncodeToString(h[:])) {
		t.Fatal("the CSP hash does not match the style")
	}
	// The household page's totals hook.
	tot, err := HouseholdTotals(b.ctx, b.pool, hh, 2019)
	if err != nil || tot == nil {
		t.Fatalf("totals %v %v", tot, err)
	}
	if tot, err := HouseholdTotals(b.ctx, b.pool, hh, 2017); err != nil || tot != nil {
		t.Fatalf("no bills: %v %v", tot, err)
	}
	// Scope: another county's clerk gets 404.
	stranger := b.user(t, auth.RoleBillingClerk, oCounty)
	if _, err := b.svc.HouseholdStatement(b.ctx, stranger, hh, 2019); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("stranger: %v", err)
	}
}

// Verify names the first thing that does not add up.
func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, check string
		tamper      []string
	}{
		{"accumulator", "accumulators", []string{`UPDATE accumulator SET basic_paid = basic_paid + 0.01`}},
		{"extra journal line", "journal balance", []string{`INSERT INTO journal_line (settlement_id, line_no, account, debit, credit)
			SELECT settlement_id, 99, '1221', 0.01, 0 FROM journal_entry LIMIT 1`}},
		{"settlement split", "journal vs settlements", []string{`ALTER TABLE settlement DISABLE TRIGGER settlement_append_only`,
			`UPDATE settlement SET basic = basic - 1, patient = patient + 1 WHERE kind = 'settle' AND basic > 1`}},
		{"settlement and journal", "replay", []string{`ALTER TABLE settlement DISABLE TRIGGER settlement_append_only`,
			`ALTER TABLE journal_line DISABLE TRIGGER journal_line_append_only`,
			`UPDATE settlement SET basic = basic - 1, patient = patient + 1 WHERE kind = 'settle' AND basic > 1`,
			`UPDATE journal_line l SET debit = debit - 1 FROM settlement s WHERE s.id = l.settlement_id AND s.kind = 'settle' AND l.account = '1221' AND s.basic > 0`,
			`UPDATE journal_line l SET debit = debit + 1 FROM settlement s WHERE s.id = l.settlement_id AND s.kind = 'settle' AND l.account = '1231'`}},
		{"bill state", "bill status", []string{`UPDATE bill_state SET status = 'open', settlement_id = NULL`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			pid := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
			id := b.newBill(t, nil, inpatientInput(pid, tCounty, "2019-08-01", "2019-08-09", line("A", "5000"), line("B", "800")))
			if _, err := b.svc.Settle(b.ctx, nil, id, SettleOptions{}); err != nil {
				t.Fatal(err)
			}
			b.verify(t)
			for _, q := range tc.tamper {
				if _, err := b.owner.Exec(b.ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			err := Verify(b.ctx, b.pool)
			var ve *VerifyError
			if !IsVerifyError(err) || !errorsAs(err, &ve) || ve.Check != tc.check {
				t.Fatalf("verify: %v, want a %q mismatch", err, tc.check)
			}
		})
	}
}

func errorsAs(err error, ve **VerifyError) bool {
	v, ok := err.(*VerifyError)
	*ve = v
	return ok
}

// The app role cannot rewrite the books.
func TestBooksAreAppendOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pid := b.person(t, tVillage, CategoryNone, 2019)
	id := b.newBill(t, nil, outpatientInput(pid, tVillage, "2019-08-01", line("A", "30")))
	if _, err := b.svc.Settle(b.ctx, nil, id, SettleOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`UPDATE settlement SET total = 0`, `DELETE FROM settlement`, `UPDATE journal_entry SET memo = 'x'`,
		`DELETE FROM journal_line`, `UPDATE journal_line SET debit = 0`, `DELETE FROM journal_entry`, `TRUNCATE journal_line`} {
		if _, err := b.pool.Exec(b.ctx, q); err == nil {
			t.Errorf("%s: allowed", q)
		}
	}
}

// An estimate computes what settling would give and writes nothing.
func TestEstimate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tCounty)
	doctor := b.user(t, auth.RoleDoctor, tCounty)
	pid := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
	// The referring stay at the township, settled.
	tclerk := b.user(t, auth.RoleBillingClerk, tTownship)
	r1 := b.referral(t, pid, tVillage, tTownship, "up", "accepted")
	in1 := inpatientInput(pid, "", "2019-03-01", "2019-03-04", line("A", "2500"))
	in1.ReferralID = r1
	first, err := b.svc.Settle(b.ctx, tclerk, b.newBill(t, tclerk, in1), SettleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r2 := b.referral(t, pid, tTownship, tCounty, "up", "arrived")
	in := inpatientInput(pid, "", "2019-03-04", "2019-03-15", line("A", "12000"), line("B", "3000"))
	in.ReferralID = r2
	tables := `SELECT (SELECT count(*) FROM settlement) + (SELECT count(*) FROM accumulator) + (SELECT count(*) FROM bill) +
		(SELECT count(*) FROM journal_line)`
	before := b.count(t, tables)
	est, err := b.svc.Estimate(b.ctx, doctor, &in, 0)
	if err != nil {
		t.Fatal(err)
	}
	if after := b.count(t, tables); after != before {
		t.Fatalf("the estimate wrote %d rows", after-before)
	}
	var snap Snapshot
	if err := json.Unmarshal(est.Input, &snap); err != nil || snap.Bill.Referral == nil || snap.Bill.Referral.PriorDeductiblePaid.String() != FormatMoney(resultOf(t, first.Settlement).Deductible) {
		t.Fatalf("estimate input %s: %v", est.Input, err)
	}
	id := b.newBill(t, clerk, in)
	byID, err := b.svc.Estimate(b.ctx, clerk, nil, id)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var e1, e2 Result
	if err := e1.UnmarshalJSON(est.Result); err != nil {
		t.Fatal(err)
	}
	if err := e2.UnmarshalJSON(byID.Result); err != nil {
		t.Fatal(err)
	}
	got := resultOf(t, out.Settlement)
	if splitOf(e1) != splitOf(got) || splitOf(e2) != splitOf(got) {
		t.Fatalf("estimates %+v %+v, settled %+v", splitOf(e1), splitOf(e2), splitOf(got))
	}
	// Another facility: the doctor may not estimate there.
	other := in
	other.Facility = tCounty2
	if _, err := b.svc.Estimate(b.ctx, doctor, &other, 0); !apperr.Is(err, apperr.Forbidden) {
		t.Fatalf("other facility: %v", err)
	}
}

const tCounty2 = "K420626-02"
