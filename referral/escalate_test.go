package referral_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/referral"
)

// A referral nobody accepts in time escalates once: overdue_at is set, an
// "escalated" event is appended, the region's admins and the doctors of the
// facility above the receiving one are notified (table and stream); a
// referral accepted in time, or not yet due, is left alone.
func TestDeadlineEscalation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)
	admin := b.user(t, auth.RoleAdmin, county)
	countyDoc := b.user(t, auth.RoleDoctor, county) // the next facility up from the township
	otherAdmin := b.user(t, auth.RoleAdmin, otherCounty)
	town2Doc := b.user(t, auth.RoleDoctor, town2)

	emergency := b.create(t, vdoc, township, referral.Emergency)
	acceptedInTime := b.create(t, vdoc, township, referral.Emergency)
	routine := b.create(t, vdoc, township, referral.Routine)
	b.clock.Advance(10 * time.Minute)
	b.act(t, tdoc, acceptedInTime, referral.Accept)

	countyStream := b.openStream(t, countyDoc, -1)
	townStream := b.openStream(t, tdoc, -1)

	b.clock.Advance(19 * time.Minute) // 29 min after sending
	if n, err := b.svc.Escalate(ctx); err != nil || n != 0 {
		t.Fatalf("before the deadline: %d, %v", n, err)
	}
	b.clock.Advance(2 * time.Minute) // 31 min
	if n, err := b.svc.Escalate(ctx); err != nil || n != 1 {
		t.Fatalf("after the emergency deadline: %d, %v", n, err)
	}
	// Idempotent, also from another server instance started later.
	svc2, err := referral.NewService(b.pool, nil, referral.DefaultPolicy(), b.clock)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*referral.Service{b.svc, svc2} {
		if n, err := s.Escalate(ctx); err != nil || n != 0 {
			t.Fatalf("second run: %d, %v", n, err)
		}
	}

	r, err := referral.Store{}.Get(ctx, b.pool, emergency.ID)
	if err != nil || r.OverdueAt == nil || !r.OverdueAt.Equal(b.clock.Now()) || r.State != referral.Sent || r.Version != 1 {
		t.Fatalf("escalated referral %+v %v", r, err)
	}
	for _, id := range []int64{acceptedInTime.ID, routine.ID} {
		if r, _ := (referral.Store{}).Get(ctx, b.pool, id); r.OverdueAt != nil {
			t.Fatalf("referral %d escalated too", id)
		}
	}
	evs, _ := referral.Store{}.Events(ctx, b.pool, emergency.ID)
	if len(evs) != 2 || evs[1].Action != referral.EventEscalated || evs[1].ActorID != 0 || evs[1].ToState != referral.Sent {
		t.Fatalf("events %+v", evs)
	}

	// The township sees the escalation on its stream; the county doctor
	// gets a notification (not the referral).
	it := item(t, townStream.next(t, "referral", 5*time.Second))
	for it.Event.Action != referral.EventEscalated {
		it = item(t, townStream.next(t, "referral", 5*time.Second))
	}
	if !it.Referral.Overdue || it.Referral.ID != emergency.ID {
		t.Fatalf("stream summary %+v", it.Referral)
	}
	ne := countyStream.next(t, "notification", 5*time.Second)
	var n referral.Notification
	if err := json.Unmarshal(ne.Data, &n); err != nil || n.Kind != referral.NotificationOverdue || *n.ReferralID != emergency.ID || ne.ID != 0 {
		t.Fatalf("notification %s: %v", ne.Data, err)
	}
	countyStream.quiet(t, 100*time.Millisecond)

	// Who was told.
	for _, c := range []struct {
		who  *auth.Principal
		want int
	}{{admin, 1}, {countyDoc, 1}, {otherAdmin, 0}, {town2Doc, 0}, {vdoc, 0}, {tdoc, 0}} {
		var nr referral.NotificationsResponse
		if resp := b.do(t, c.who, http.MethodGet, "/api/v1/notifications", nil, &nr); resp.StatusCode != http.StatusOK {
			t.Fatalf("notifications: %d", resp.StatusCode)
		}
		if len(nr.Notifications) != c.want {
			t.Errorf("%s at %s: %d notifications, want %d", c.who.Role, c.who.Facility, len(nr.Notifications), c.want)
		}
	}

	// The routine one, 48 h later, with four escalators racing: once.
	b.clock.Advance(48 * time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := b.svc.Escalate(ctx)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != 1 {
		t.Fatalf("racing escalators escalated %d", total)
	}
	var events int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM referral_event WHERE action = 'escalated'`).Scan(&events); err != nil || events != 2 {
		t.Fatalf("%d escalated events (%v)", events, err)
	}
	// Overdue shows in the list.
	var l referral.ListResponse
	b.do(t, vdoc, http.MethodGet, "/api/v1/referrals?box=outbox&state=sent", nil, &l)
	overdue := 0
	for _, s := range l.Referrals {
		if s.Overdue {
			overdue++
		}
	}
	if len(l.Referrals) != 2 || overdue != 2 {
		t.Fatalf("outbox %+v", l.Referrals)
	}
}

// The background loop escalates on its own schedule and stops with its
// context.
func TestEscalatorLoop(t *testing.T) {
	t.Parallel()
	p := referral.DefaultPolicy()
	p.EscalateEvery = 20 * time.Millisecond
	b := setup(t, setupOpts{policy: &p, noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	r := b.create(t, vdoc, township, referral.Urgent)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.svc.RunEscalator(ctx) }()
	b.clock.Advance(4*time.Hour + time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := referral.Store{}.Get(ctx, b.pool, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.OverdueAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop did not escalate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not stop")
	}
}
