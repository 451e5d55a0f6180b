package settlement

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
)

// Concurrent settle requests are settled in groups: every request gets its
// own answer (settled, replayed, refused), a person's bills are applied one
// after the other, and the books replay clean.
func TestSettleGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tTownship)
	type req struct {
		bill    int64
		key     string
		version int
		want    apperr.Code // "" for a settlement
	}
	var reqs []req
	for i := range 8 {
		pid := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
		for d := range 3 {
			id := b.newBill(t, clerk, inpatientInput(pid, "", fmt.Sprintf("2019-0%d-01", d+2), fmt.Sprintf("2019-0%d-05", d+2),
				line("A", strconv.Itoa(3000+100*i)), line("B", "800")))
			key := fmt.Sprintf("g-%d-%d", i, d)
			reqs = append(reqs, req{bill: id, key: key}, req{bill: id, key: key}) // each sent twice
		}
	}
	open := b.newBill(t, clerk, outpatientInput(b.person(t, tVillage, CategoryNone, 2019), "", "2019-05-02", line("A", "40")))
	reqs = append(reqs, req{bill: 1 << 40, key: "missing", want: apperr.NotFound},
		req{bill: open, key: "stale", version: 7, want: apperr.Conflict})

	type answer struct {
		out *Settled
		err error
	}
	answers := make([]answer, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			out, err := b.svc.Settle(b.ctx, clerk, r.bill, SettleOptions{Key: r.key, Version: r.version})
			answers[i] = answer{out, err}
		})
	}
	wg.Wait()
	b.svc.queue.mu.Lock()
	if q := &b.svc.queue; q.leaders != 0 || len(q.ops) != 0 {
		t.Errorf("after the requests: %d leaders, %d queued", q.leaders, len(q.ops))
	}
	b.svc.queue.mu.Unlock()
	for i, r := range reqs {
		a := answers[i]
		if r.want != "" {
			if !apperr.Is(a.err, r.want) {
				t.Errorf("bill %d: %v, want %s", r.bill, a.err, r.want)
			}
			continue
		}
		if a.err != nil {
			t.Fatalf("bill %d: %v", r.bill, a.err)
		}
	}
	// The two requests of each key: one settled it, the other got the same
	// answer back.
	for i := 0; i < 48; i += 2 {
		x, y := answers[i].out, answers[i+1].out
		if x.Replayed == y.Replayed || !bytes.Equal(x.Body, y.Body) {
			t.Fatalf("bill %d: replayed %v and %v, same body %v", reqs[i].bill, x.Replayed, y.Replayed, bytes.Equal(x.Body, y.Body))
		}
	}
	b.verify(t)
}

// A group that fails as a whole (here a trigger refuses one bill's
// settlement) costs the other requests nothing: each is settled again on
// its own, and only the refused one fails.
func TestSettleGroupFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clerk := b.user(t, auth.RoleBillingClerk, tTownship)
	var bills []int64
	for range 12 {
		pid := b.person(t, tVillage, CategoryNone, 2019)
		bills = append(bills, b.newBill(t, clerk, outpatientInput(pid, "", "2019-06-03", line("A", "60"))))
	}
	bad := bills[5]
	if _, err := b.owner.Exec(b.ctx, fmt.Sprintf(`
		CREATE FUNCTION refuse_bill() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
		CREATE TRIGGER refuse_bill BEFORE INSERT ON settlement FOR EACH ROW WHEN (NEW.bill_id = %d) EXECUTE FUNCTION refuse_bill()`, bad)); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(bills))
	var wg sync.WaitGroup
	for i, id := range bills {
		wg.Go(func() {
			_, errs[i] = b.svc.Settle(b.ctx, clerk, id, SettleOptions{Key: "f-" + strconv.Itoa(i)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (bills[i] == bad) {
			t.Errorf("bill %d: %v", bills[i], err)
		}
	}
	var settled int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM bill_state WHERE status = 'settled' AND bill_id = ANY($1)`, bills).Scan(&settled); err != nil {
		t.Fatal(err)
	}
	if settled != len(bills)-1 {
		t.Fatalf("%d settled, want %d", settled, len(bills)-1)
	}
	b.verify(t)
}
