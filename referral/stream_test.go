package referral_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/referral"
)

// writeLoad runs writers that create and accept referrals concurrently:
// half of them at the township (visible to its doctors), half between
// other facilities (invisible). It returns when all are done.
func writeLoad(t *testing.T, b *testBundle, perWriter int) {
	t.Helper()
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)
	odoc := b.user(t, auth.RoleVillageDoctor, village2)
	o2doc := b.user(t, auth.RoleDoctor, town2)
	pid, _ := b.person(t, "孙七")
	pid2, _ := b.personIn(t, "吴十", village2)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to, target, pid := vdoc, tdoc, township, pid
			if w%2 == 1 {
				from, to, target, pid = odoc, o2doc, town2, pid2
			}
			for range perWriter {
				r, _, err := b.svc.Create(ctxFor(from), from, referral.CreateRequest{PersonID: pid, ToFacility: target,
					Urgency: referral.Urgent, Diagnoses: []string{"R50.9"}, Summary: "发热"}, "")
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := b.svc.Act(ctxFor(to), to, r.ID, referral.Accept, actionBody(referral.Accept, r.Version)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// visibleAfter is every event id > after the principal may see, in order.
func visibleAfter(t *testing.T, b *testBundle, p *auth.Principal, after int64) []int64 {
	t.Helper()
	items, err := referral.Store{}.EventsAfter(context.Background(), b.pool, after, referral.VisibilityOf(p), 100000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, it := range items {
		ids = append(ids, it.Event.ID)
	}
	return ids
}

// A client that keeps dropping its connection and resuming with
// Last-Event-ID, while six writers commit concurrently, receives every
// event it may see exactly once, in order; a live-only client sees them in
// order too.
func TestStreamResumesWithoutGapsOrDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	watcher := b.user(t, auth.RoleDoctor, township)
	var l referral.ListResponse
	b.do(t, watcher, http.MethodGet, "/api/v1/referrals", nil, &l)
	start := l.StreamCursor

	live := b.openStream(t, watcher, -1)
	done := make(chan struct{})
	go func() { writeLoad(t, b, 15); close(done) }()

	var got []int64
	last := start
	for finished := false; !finished; {
		s := b.openStream(t, watcher, last)
		for n := 0; n < 7; n++ {
			select {
			case e, ok := <-s.events:
				if !ok {
					t.Fatal("stream closed")
				}
				if e.Event != "referral" {
					continue
				}
				got = append(got, e.ID)
				last = e.ID
				continue
			case <-done:
				finished = true
			case <-time.After(10 * time.Second):
				t.Fatal("stalled")
			}
			break
		}
		s.close()
	}
	// Drain the rest after the writers finished.
	want := visibleAfter(t, b, watcher, start)
	s := b.openStream(t, watcher, last)
	for len(got) < len(want) {
		e := s.next(t, "referral", 10*time.Second)
		got = append(got, e.ID)
	}
	s.quiet(t, 200*time.Millisecond)
	if !slices.Equal(got, want) {
		t.Fatalf("resumed client got %d events, want %d\n got %v\nwant %v", len(got), len(want), got, want)
	}
	var liveIDs []int64
	for len(liveIDs) < len(want) {
		liveIDs = append(liveIDs, live.next(t, "referral", 10*time.Second).ID)
	}
	if !slices.Equal(liveIDs, want) {
		t.Fatalf("live client\n got %v\nwant %v", liveIDs, want)
	}
}

// When the listener's connection is killed, the hub reconnects and
// delivers what was committed meanwhile: live clients lose nothing.
func TestStreamSurvivesListenerRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	watcher := b.user(t, auth.RoleDoctor, township)
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	live := b.openStream(t, watcher, -1)
	ctx := context.Background()

	r1 := b.create(t, vdoc, township, referral.Routine)
	if it := item(t, live.next(t, "referral", 5*time.Second)); it.Referral.ID != r1.ID {
		t.Fatalf("got %+v", it)
	}
	var killed int
	if err := b.owner.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, referral.ListenerName).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("killed %d listeners (%v)", killed, err)
	}
	// Committed while the hub is (probably) reconnecting.
	r2 := b.create(t, vdoc, township, referral.Routine)
	r3 := b.create(t, vdoc, township, referral.Routine)
	for _, want := range []int64{r2.ID, r3.ID} {
		if it := item(t, live.next(t, "referral", 10*time.Second)); it.Referral.ID != want {
			t.Fatalf("got referral %d, want %d", it.Referral.ID, want)
		}
	}
}

// A server ReadTimeout (qinba serve has one) does not cut a stream short.
func TestStreamOutlivesReadTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{readTimeout: 200 * time.Millisecond})
	watcher := b.user(t, auth.RoleDoctor, township)
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	s := b.openStream(t, watcher, -1)
	time.Sleep(600 * time.Millisecond)
	r := b.create(t, vdoc, township, referral.Routine)
	if it := item(t, s.next(t, "referral", 5*time.Second)); it.Referral.ID != r.ID {
		t.Fatalf("got %+v", it)
	}
}

// Heartbeats are comment lines at the policy's interval; a bad
// Last-Event-ID is 400; roles without referral access get 403.
func TestStreamHeartbeatAndErrors(t *testing.T) {
	t.Parallel()
	p := referral.DefaultPolicy()
	p.Heartbeat = 50 * time.Millisecond
	b := setup(t, setupOpts{policy: &p})
	watcher := b.user(t, auth.RoleDoctor, township)
	clerk := b.user(t, auth.RoleBillingClerk, township)

	req, _ := http.NewRequest(http.MethodGet, b.url+"/api/v1/referrals/stream", nil)
	req.Header.Set("X-Test-User", watcher.Username)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
	buf := make([]byte, 4096)
	var seen string
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n, err := resp.Body.Read(buf)
		seen += string(buf[:n])
		if err != nil || countOf(seen, ": heartbeat\n\n") >= 2 {
			break
		}
	}
	if countOf(seen, ": heartbeat\n\n") < 2 {
		t.Fatalf("no heartbeats in %q", seen)
	}
	var eb errBody
	if r := b.do(t, watcher, http.MethodGet, "/api/v1/referrals/stream?last_event_id=abc", nil, &eb); r.StatusCode != 400 {
		t.Fatalf("bad last id: %d", r.StatusCode)
	}
	if r := b.do(t, clerk, http.MethodGet, "/api/v1/referrals/stream", nil, &eb); r.StatusCode != 403 {
		t.Fatalf("clerk: %d", r.StatusCode)
	}
}

func countOf(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}
