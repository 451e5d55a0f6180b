package settlement

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
)

// engineSplit settles bill with the reference policy from acc, for
// comparison with what the service stored.
func engineSplit(t *testing.T, person Person, acc Accumulators, bill Bill) (Result, Accumulators) {
	t.Helper()
	r, next, err := ReferencePolicy().Settle(person, acc, bill)
	if err != nil {
		t.Fatal(err)
	}
	return r, next
}

func TestSettleReverseResettle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tTownship)
	pid := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
	id := b.newBill(t, clerk, inpatientInput(pid, "", "2019-03-01", "2019-03-05", line("A", "3000"), line("B", "500.50"), line("C", "200")))

	first, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := engineSplit(t, Person{CategoryRegisteredPoor, true}, Accumulators{}, Bill{ID: strconv.FormatInt(id, 10), Kind: KindInpatient,
		Tier: TierTownship, Lines: []Line{{ClassA, dec("3000")}, {ClassB, dec("500.50")}, {ClassC, dec("200")}}})
	got := resultOf(t, first.Settlement)
	if splitOf(got) != splitOf(want) {
		t.Fatalf("split %+v, engine %+v", splitOf(got), splitOf(want))
	}
	if first.Settlement.PostedOn != "2019-03-05" || first.Settlement.Year != 2019 {
		t.Fatalf("posted %s year %d", first.Settlement.PostedOn, first.Settlement.Year)
	}

	// The same request again: the first answer, byte for byte.
	again, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: "k1"})
	if err != nil || !again.Replayed || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("retry: %v replayed=%v", err, again != nil && again.Replayed)
	}
	// The key for another bill: 409.
	other := b.newBill(t, clerk, outpatientInput(pid, "", "2019-03-07", line("A", "20")))
	if _, err := b.svc.Settle(b.ctx, clerk, other, SettleOptions{Key: "k1"}); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("key reused for another bill: %v", err)
	}
	// Settled already: 409.
	if _, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: "k2"}); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("settle twice: %v", err)
	}

	rev, err := b.svc.Reverse(b.ctx, clerk, first.Settlement.ID, ReverseRequest{Reason: "录入错误", Date: "2019-03-20"}, "k3")
	if err != nil {
		t.Fatal(err)
	}
	rr := resultOf(t, rev.Settlement)
	if !rr.Reversal || !rr.Total.Equal(got.Total.Neg()) || !rr.Patient.Equal(got.Patient.Neg()) || rev.Settlement.Reverses != first.Settlement.ID {
		t.Fatalf("reversal %+v", splitOf(rr))
	}
	if _, err := b.svc.Reverse(b.ctx, clerk, first.Settlement.ID, ReverseRequest{Reason: "again"}, "k4"); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("reverse twice: %v", err)
	}
	if _, err := b.svc.Reverse(b.ctx, clerk, rev.Settlement.ID, ReverseRequest{Reason: "x"}, "k5"); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("reverse a reversal: %v", err)
	}
	// Re-settled after the reversal: the same split (the accumulators are
	// back to zero).
	second, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: "k6"})
	if err != nil {
		t.Fatal(err)
	}
	if splitOf(resultOf(t, second.Settlement)) != splitOf(want) {
		t.Fatalf("re-settled %+v", splitOf(resultOf(t, second.Settlement)))
	}
	if _, err := b.svc.Settle(b.ctx, clerk, other, SettleOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err := b.svc.GetBill(b.ctx, clerk, id)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != StatusSettled || v.SettlementID != second.Settlement.ID || len(v.Settlements) != 3 || v.Settlement == nil {
		js, _ := json.Marshal(v)
		t.Fatalf("bill %s", js)
	}
	b.verify(t)

	// Another facility's clerk sees nothing.
	stranger := b.user(t, auth.RoleBillingClerk, tTown2)
	if _, err := b.svc.GetBill(b.ctx, stranger, id); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("stranger: %v", err)
	}
	if _, err := b.svc.Reverse(b.ctx, stranger, second.Settlement.ID, ReverseRequest{Reason: "x"}, "s1"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("stranger reverses: %v", err)
	}
}

// A bill's referral must be an accepted referral of its person to its
// facility, up or down; its direction and sender are copied to the bill.
func TestBillReferral(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tCounty)
	pid := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
	other := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
	cases := map[string]struct {
		ref  int64
		want string // "" ok, else the message fragment
	}{
		"accepted up":      {b.referral(t, pid, tTownship, tCounty, "up", "accepted"), ""},
		"completed":        {b.referral(t, pid, tTownship, tCounty, "up", "completed"), ""},
		"down":             {b.referral(t, pid, "C4206-01", tCounty, "down", "arrived"), ""},
		"sent":             {b.referral(t, pid, tTownship, tCounty, "up", "sent"), "only a referral the facility accepted"},
		"declined":         {b.referral(t, pid, tTownship, tCounty, "up", "declined"), "only a referral the facility accepted"},
		"another person":   {b.referral(t, other, tTownship, tCounty, "up", "accepted"), "another person's"},
		"another facility": {b.referral(t, pid, tTownship, tCounty2, "up", "accepted"), "goes to " + tCounty2},
		"lateral":          {b.referral(t, pid, tCounty2, tCounty, "lateral", "accepted"), "lateral"},
		"unknown":          {987654, "not found"},
	}
	for name, c := range cases {
		in := inpatientInput(pid, "", "2019-04-01", "2019-04-05", line("A", "1000"))
		in.ReferralID = c.ref
		v, _, err := b.svc.CreateBill(b.ctx, clerk, &in)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want == "" && (v.Referral == nil || v.Referral.ID != c.ref):
			t.Errorf("%s: referral %+v", name, v.Referral)
		case c.want != "" && (!apperr.Is(err, apperr.Invalid) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// A clerk records bills of their own facility only.
	in := inpatientInput(pid, tCounty2, "2019-04-01", "2019-04-05", line("A", "1000"))
	if _, _, err := b.svc.CreateBill(b.ctx, clerk, &in); !apperr.Is(err, apperr.Forbidden) {
		t.Fatalf("another facility: %v", err)
	}
	// Same external number: unchanged (200), corrected while open, 409 once settled.
	in = inpatientInput(pid, "", "2019-05-01", "2019-05-05", line("A", "1000"))
	in.ExternalNo = "X-1"
	v1, created, err := b.svc.CreateBill(b.ctx, clerk, &in)
	if err != nil || !created {
		t.Fatal(err)
	}
	if v, created, err := b.svc.CreateBill(b.ctx, clerk, &in); err != nil || created || v.ID != v1.ID || v.Version != 1 {
		t.Fatalf("again: %+v %v %v", v, created, err)
	}
	in.Lines = append(in.Lines, line("B", "20"))
	if v, _, err := b.svc.CreateBill(b.ctx, clerk, &in); err != nil || v.ID != v1.ID || v.Version != 2 || len(v.Lines) != 2 {
		t.Fatalf("correction: %+v %v", v, err)
	}
	if _, err := b.svc.Settle(b.ctx, clerk, v1.ID, SettleOptions{Version: 1}); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("settle an outdated version: %v", err)
	}
	if _, err := b.svc.Settle(b.ctx, clerk, v1.ID, SettleOptions{Version: 2}); err != nil {
		t.Fatal(err)
	}
	in.Lines = in.Lines[:1]
	if _, _, err := b.svc.CreateBill(b.ctx, clerk, &in); !apperr.Is(err, apperr.Conflict) {
		t.Fatalf("correct a settled bill: %v", err)
	}
}

// One key sent for two bills at once: one is settled, the other is told
// the key is taken; never both.
func TestIdempotencyKeyRace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tCounty)
	for round := range 5 {
		x := b.newBill(t, clerk, inpatientInput(b.person(t, tVillage, CategoryNone, 2019), "", "2019-04-01", "2019-04-05", line("A", "1000")))
		y := b.newBill(t, clerk, inpatientInput(b.person(t, tVillage, CategoryNone, 2019), "", "2019-04-01", "2019-04-05", line("A", "1000")))
		key := "race-" + strconv.Itoa(round)
		errs := make(chan error, 2)
		for _, id := range []int64{x, y} {
			go func() {
				_, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: key})
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("round %d: %v, %v", round, e1, e2)
		}
		if err := errors.Join(e1, e2); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	b.verify(t)
}

// A county's patient treated in a city hospital (region 420600, which has no
// policy of its own) is settled under their county's policy, at the city
// tier: the policy follows the insurance pool, not the hospital.
func TestSettleCityHospitalUnderHomeCountyPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const city = "C4206-01"
	clerk := b.user(t, auth.RoleBillingClerk, city)
	pid := b.person(t, tVillage, CategoryDibao, 2019)
	id := b.newBill(t, clerk, inpatientInput(pid, city, "2019-05-01", "2019-05-09", line("A", "12000"), line("B", "800")))
	v, err := b.svc.GetBill(b.ctx, clerk, id)
	if err != nil || v.Region != "420626" || v.Tier != TierCity {
		t.Fatalf("bill region %q tier %q (%v)", v.Region, v.Tier, err)
	}
	got, err := b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := engineSplit(t, Person{CategoryDibao, true}, Accumulators{}, Bill{ID: strconv.FormatInt(id, 10), Kind: KindInpatient,
		Tier: TierCity, Lines: []Line{{ClassA, dec("12000")}, {ClassB, dec("800")}}})
	if s := resultOf(t, got.Settlement); splitOf(s) != splitOf(want) || got.Settlement.Policy != "baokang-2019" {
		t.Fatalf("split %+v under %s, engine %+v", splitOf(s), got.Settlement.Policy, splitOf(want))
	}
	b.verify(t)
}
