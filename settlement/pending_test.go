package settlement

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// pendingFixture fills a database with a deterministic set of open bills:
// persons of every category (some uninsured) with one to six bills each,
// outpatient and inpatient, at the village, township and county, several
// on the same day, and a chain of stays referred up (village → township →
// county) whose deductibles carry over. Run on two fresh databases it
// gives the same ids.
func pendingFixture(t *testing.T, b *bundle) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	cats := []string{CategoryRegisteredPoor, CategoryDibao, CategoryTekun, CategoryNone}
	for i := range 24 {
		var insured []int
		if i%7 != 3 {
			insured = []int{2019}
		}
		pid := b.person(t, tVillage, cats[i%4], insured...)
		n := 1 + rng.IntN(6)
		for k := range n {
			day := fmt.Sprintf("2019-%02d-%02d", 1+rng.IntN(12), 1+rng.IntN(28))
			var in BillInput
			switch rng.IntN(4) {
			case 0:
				in = outpatientInput(pid, tVillage, day, line("A", "18.5"), line("B", fmt.Sprintf("%d.%02d", rng.IntN(60), rng.IntN(100))))
			case 1:
				in = outpatientInput(pid, tTownship, day, line("A", fmt.Sprintf("%d", 20+rng.IntN(200))))
			case 2:
				in = inpatientInput(pid, tTownship, "2019-01-01", day, line("A", fmt.Sprintf("%d", 1000+rng.IntN(9000))), line("C", "120"))
			default:
				in = inpatientInput(pid, tCounty, "2019-01-01", day, line("A", fmt.Sprintf("%d", 5000+rng.IntN(60000))),
					line("B", fmt.Sprintf("%d.50", 100+rng.IntN(20000))), line("C", fmt.Sprintf("%d", rng.IntN(3000))))
				in.Emergency = k%3 == 0
			}
			in.ExternalNo = fmt.Sprintf("P%02d-%d", i, k)
			b.newBill(t, nil, in)
		}
	}
	// The referral chain of one poor patient.
	pid := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
	r1 := b.referral(t, pid, tVillage, tTownship, "up", "completed")
	r2 := b.referral(t, pid, tTownship, tCounty, "up", "arrived")
	in := inpatientInput(pid, tTownship, "2019-06-01", "2019-06-10", line("A", "4200"), line("B", "1300"))
	in.ReferralID, in.ExternalNo = r1, "R-1"
	b.newBill(t, nil, in)
	in = inpatientInput(pid, tCounty, "2019-06-10", "2019-06-30", line("A", "26000"), line("B", "9000"), line("C", "2500"))
	in.ReferralID, in.ExternalNo = r2, "R-2"
	b.newBill(t, nil, in)
}

// settledSplits returns, per bill id, its settlement's amounts, delta and
// accounting date, and every accumulator row.
func settledSplits(t *testing.T, b *bundle) (map[int64]string, map[string]string) {
	t.Helper()
	bills := map[int64]string{}
	rows, err := b.pool.Query(b.ctx, `SELECT bill_id, concat_ws(' ', total, eligible, deductible, basic, critical, assistance, supplementary,
			backstop, hospital, patient, d_admissions, d_outpatient_paid, d_basic_paid, d_critical_base, d_critical_paid, d_assistance_paid,
			d_supplementary_paid, d_backstop_paid, d_patient_in_policy, posted_on, policy_id, input::text)
		FROM settlement ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var s string
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		bills[id] = s
	}
	rows.Close()
	accs := map[string]string{}
	rows, err = b.pool.Query(b.ctx, `SELECT person_id || '/' || year, concat_ws(' ', `+accCols+`) FROM accumulator a`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, s string
		if err := rows.Scan(&k, &s); err != nil {
			t.Fatal(err)
		}
		accs[k] = s
	}
	rows.Close()
	return bills, accs
}

// settle --pending gives exactly what settling the bills one by one in date
// order gives: the same split, delta and accounting date for every bill and
// the same accumulators; both books verify.
func TestSettlePendingEqualsOneByOne(t *testing.T) {
	t.Parallel()
	batch, single := setup(t), setup(t)
	pendingFixture(t, batch)
	pendingFixture(t, single)

	var progress []int64
	rep, err := batch.svc.SettlePending(batch.ctx, PendingOptions{Workers: 3, Batch: 7, Progress: func(done, total int64) {
		progress = append(progress, done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Settled != rep.Bills || len(rep.Failed) != 0 || rep.Bills < 40 {
		t.Fatalf("report %+v", rep)
	}
	if len(progress) == 0 || progress[len(progress)-1] != int64(rep.Bills) {
		t.Fatalf("progress %v", progress)
	}

	rows, err := single.pool.Query(single.ctx, `SELECT bill_id FROM bill_state bs JOIN bill b ON b.id = bs.bill_id
		WHERE bs.status = 'open' ORDER BY b.bill_date, b.id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if _, err := single.svc.Settle(single.ctx, nil, id, SettleOptions{}); err != nil {
			t.Fatalf("bill %d: %v", id, err)
		}
	}

	gotB, gotA := settledSplits(t, batch)
	wantB, wantA := settledSplits(t, single)
	if len(gotB) != len(wantB) || len(gotA) != len(wantA) {
		t.Fatalf("batch: %d settlements, %d accumulator rows; one by one: %d, %d", len(gotB), len(gotA), len(wantB), len(wantA))
	}
	for id, want := range wantB {
		if gotB[id] != want {
			t.Errorf("bill %d:\nbatch      %s\none by one %s", id, gotB[id], want)
		}
	}
	for k, want := range wantA {
		if gotA[k] != want {
			t.Errorf("accumulators %s:\nbatch      %s\none by one %s", k, gotA[k], want)
		}
	}
	// The referred county stay counted the township stay's deductible.
	var prior string
	if err := batch.pool.QueryRow(batch.ctx, `SELECT input->'bill'->'referral'->>'prior_deductible_paid' FROM settlement s
		JOIN bill b ON b.id = s.bill_id WHERE b.external_no = 'R-2'`).Scan(&prior); err != nil || prior == "0.00" || prior == "" {
		t.Fatalf("prior deductible of the county stay: %q %v", prior, err)
	}
	batch.verify(t)
	single.verify(t)

	// Nothing left: a second run settles nothing.
	rep, err = batch.svc.SettlePending(batch.ctx, PendingOptions{})
	if err != nil || rep.Bills != 0 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
}

// A bill the policy refuses is reported and the person's later bills stay
// open; other persons are settled.
func TestSettlePendingStopsAtARefusedBill(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A patient of a county without a policy (their home village is in
	// region 420625): their bill is refused (409 no policy).
	pid := b.person(t, "V420625-001", CategoryDibao, 2019)
	first := b.newBill(t, nil, inpatientInput(pid, oCounty, "2019-02-01", "2019-02-03", line("A", "900")))
	later := b.newBill(t, nil, inpatientInput(pid, tCounty, "2019-03-01", "2019-03-03", line("A", "900")))
	other := b.newBill(t, nil, outpatientInput(b.person(t, tVillage, CategoryNone, 2019), tVillage, "2019-02-01", line("A", "30")))
	rep, err := b.svc.SettlePending(b.ctx, PendingOptions{Workers: 2, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Settled != 1 || len(rep.Failed) != 1 || rep.Failed[0].BillID != first || rep.Skipped != 1 {
		t.Fatalf("report %+v", rep)
	}
	for id, want := range map[int64]string{first: StatusOpen, later: StatusOpen, other: StatusSettled} {
		var st string
		if err := b.pool.QueryRow(b.ctx, `SELECT status FROM bill_state WHERE bill_id = $1`, id).Scan(&st); err != nil || st != want {
			t.Errorf("bill %d: %s (%v), want %s", id, st, err, want)
		}
	}
	b.verify(t)
}
