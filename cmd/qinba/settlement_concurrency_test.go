package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/settlement"
)

// 100 settle requests for one person at once, through the HTTP API: 60
// bills, and 40 retries of some of their Idempotency-Keys racing the
// originals. Every bill is settled exactly once, every answer to a key is
// the same, nothing fails, and the books are exactly those of settling the
// bills one after the other: the k-th settlement committed has the split
// the engine gives the k-th bill of a serial run (the bills are alike, so
// the serial result does not depend on their order), the accumulators are
// the serial run's, and Verify passes.
func TestConcurrentSettlementsOfOnePerson(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	svc := stlSvc(t, ts)
	clerk := ts.as(t, auth.RoleBillingClerk, facCounty)
	_, ids := stlHousehold(t, ts, facVillage, "dibao", "head")
	pid := ids[0]
	const nBills, nRetries = 60, 40
	lines := []settlement.LineInput{stlLine("A", "8000"), stlLine("B", "3000.55"), stlLine("C", "1000")}
	bills := make([]int64, nBills)
	for i := range bills {
		in := stlInpatient(pid, facCounty, "2019-03-01", fmt.Sprintf("2019-%02d-%02d", 3+i/28, 1+i%28), lines...)
		v, _, err := svc.CreateBill(ctx, nil, &in)
		if err != nil {
			t.Fatal(err)
		}
		bills[i] = v.ID
	}

	type call struct {
		bill int64
		key  string
	}
	var calls []call
	for i, b := range bills {
		calls = append(calls, call{b, "conc-" + strconv.Itoa(i)})
	}
	for i := range nRetries {
		calls = append(calls, calls[(i*7)%nBills])
	}
	type answer struct {
		status   int
		body     []byte
		replayed bool
	}
	answers := make([]answer, len(calls))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/v1/bills/%d/settle", ts.URL, c.bill), nil)
			req.Header.Set("Authorization", "Bearer "+clerk.Access)
			req.Header.Set("Idempotency-Key", c.key)
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			answers[i] = answer{resp.StatusCode, buf.Bytes(), resp.Header.Get("Idempotent-Replayed") == "true"}
		}()
	}
	close(start)
	wg.Wait()

	byKey := map[string][]byte{}
	replays := 0
	for i, a := range answers {
		if a.status != http.StatusCreated {
			t.Fatalf("call %d (%s): %d %s", i, calls[i].key, a.status, a.body)
		}
		if a.replayed {
			replays++
		}
		if prev, ok := byKey[calls[i].key]; ok && !bytes.Equal(prev, a.body) {
			t.Fatalf("key %s answered twice differently:\n%s\n%s", calls[i].key, prev, a.body)
		}
		byKey[calls[i].key] = a.body
	}
	if replays != nRetries {
		t.Errorf("%d answers replayed, want %d", replays, nRetries)
	}
	if n := stlCount(t, ts, `SELECT count(*) FROM settlement WHERE person_id = $1`, pid); n != nBills {
		t.Fatalf("%d settlements, want %d", n, nBills)
	}
	if n := stlCount(t, ts, `SELECT count(DISTINCT bill_id) FROM settlement WHERE person_id = $1`, pid); n != nBills {
		t.Fatalf("%d bills settled, want %d", n, nBills)
	}

	// The serial run.
	p := settlement.ReferencePolicy()
	person := settlement.Person{Category: "dibao", Insured: true}
	var acc settlement.Accumulators
	var serial []settlement.Result
	for range nBills {
		var bl []settlement.Line
		for _, l := range lines {
			bl = append(bl, settlement.Line{Class: l.Class, Amount: decimal.RequireFromString(l.UnitPrice)})
		}
		r, next, err := p.Settle(person, acc, settlement.Bill{ID: "x", Kind: settlement.KindInpatient, Tier: settlement.TierCounty, Lines: bl})
		if err != nil {
			t.Fatal(err)
		}
		serial, acc = append(serial, r), next
	}
	rows, err := ts.Pool.Query(ctx, `SELECT result FROM settlement WHERE person_id = $1 ORDER BY id`, pid)
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var got settlement.Result
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		want := serial[k]
		for i, amt := range got.Payers() {
			if !amt.Equal(want.Payers()[i]) || !got.Deductible.Equal(want.Deductible) {
				t.Fatalf("settlement %d in commit order: %s = %s, the serial run gives %s", k+1, settlement.Payers[i], amt, want.Payers()[i])
			}
		}
		k++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var stored settlement.Accumulators
	if err := ts.Pool.QueryRow(ctx, `SELECT admissions, outpatient_paid, basic_paid, critical_base, critical_paid, assistance_paid,
			supplementary_paid, backstop_paid, patient_in_policy FROM accumulator WHERE person_id = $1 AND year = 2019`, pid).
		Scan(&stored.Admissions, &stored.OutpatientPaid, &stored.BasicPaid, &stored.CriticalBase, &stored.CriticalPaid,
			&stored.AssistancePaid, &stored.SupplementaryPaid, &stored.BackstopPaid, &stored.PatientInPolicy); err != nil {
		t.Fatal(err)
	}
	if !stored.Equal(acc) {
		t.Fatalf("accumulators %+v, the serial run ends at %+v", stored, acc)
	}
	if acc.BasicPaid.String() != "150000" {
		t.Logf("note: basic annual cap not reached (%s)", acc.BasicPaid)
	}
	if err := settlement.Verify(ctx, ts.Pool); err != nil {
		t.Fatal(err)
	}
}
