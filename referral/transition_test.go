package referral_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/referral"
)

// The whole state machine: exactly these six moves exist.
var allowed = map[referral.State]map[referral.Action]referral.State{
	referral.Sent:      {referral.Accept: referral.Accepted, referral.Decline: referral.Declined, referral.Cancel: referral.Cancelled},
	referral.Accepted:  {referral.Schedule: referral.Scheduled},
	referral.Scheduled: {referral.Arrive: referral.Arrived},
	referral.Arrived:   {referral.Complete: referral.Completed},
}

func TestNextCoversEveryStateAndAction(t *testing.T) {
	t.Parallel()
	for _, s := range referral.States {
		for _, a := range referral.Actions {
			got, ok := referral.Next(s, a)
			want, wantOK := allowed[s][a]
			if ok != wantOK || got != want {
				t.Errorf("Next(%s, %s) = %q, %v; want %q, %v", s, a, got, ok, want, wantOK)
			}
		}
	}
	if _, ok := referral.Next(referral.Sent, "approve"); ok {
		t.Error("unknown action allowed")
	}
}

// Every state × action pair against the database: the allowed ones move the
// referral and bump its version; every other one is a 409 naming the
// current state and version, and changes nothing.
func TestEveryForbiddenTransitionIsConflict(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)

	// into drives a fresh referral into state s.
	into := func(t *testing.T, s referral.State) referral.Referral {
		r := b.create(t, vdoc, township, referral.Routine)
		path := map[referral.State][]referral.Action{
			referral.Sent:      nil,
			referral.Accepted:  {referral.Accept},
			referral.Scheduled: {referral.Accept, referral.Schedule},
			referral.Arrived:   {referral.Accept, referral.Schedule, referral.Arrive},
			referral.Completed: {referral.Accept, referral.Schedule, referral.Arrive, referral.Complete},
			referral.Declined:  {referral.Decline},
			referral.Cancelled: {referral.Cancel},
		}[s]
		for _, a := range path {
			actor := tdoc
			if a == referral.Cancel {
				actor = vdoc
			}
			r = b.act(t, actor, r, a)
		}
		if r.State != s {
			t.Fatalf("drove into %s, got %s", s, r.State)
		}
		return r
	}
	for _, s := range referral.States {
		for _, a := range referral.Actions {
			t.Run(fmt.Sprintf("%s/%s", s, a), func(t *testing.T) {
				t.Parallel()
				r := into(t, s)
				actor := tdoc
				if a == referral.Cancel {
					actor = vdoc
				}
				out, err := b.svc.Act(ctxFor(actor), actor, r.ID, a, actionBody(a, r.Version))
				if want, ok := allowed[s][a]; ok {
					if err != nil || out.State != want || out.Version != r.Version+1 {
						t.Fatalf("allowed move: %+v, %v", out, err)
					}
					return
				}
				e, ok := apperr.As(err)
				if !ok || e.Code != apperr.Conflict {
					t.Fatalf("err = %v, want conflict", err)
				}
				if e.Details["state"] != s || e.Details["version"] != r.Version {
					t.Fatalf("details %v, want state %s version %d", e.Details, s, r.Version)
				}
				cur, err := referral.Store{}.Get(ctxFor(actor), b.pool, r.ID)
				if err != nil || cur.State != s || cur.Version != r.Version {
					t.Fatalf("refused move changed the referral: %+v %v", cur, err)
				}
			})
		}
	}
}

// The wrong end of a referral is 403 before any state check; a stale
// version is 409 with the current version; a version mismatch leaves the
// referral alone.
func TestWhoMayActAndStaleVersion(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	vdoc2 := b.user(t, auth.RoleVillageDoctor, village)
	tdoc := b.user(t, auth.RoleDoctor, township)
	tclerk := b.user(t, auth.RoleBillingClerk, township)
	admin := b.user(t, auth.RoleAdmin, county)
	r := b.create(t, vdoc, township, referral.Urgent)

	cases := []struct {
		who  *auth.Principal
		a    referral.Action
		code apperr.Code
	}{
		{vdoc, referral.Accept, apperr.Forbidden},   // sender may not accept
		{tdoc, referral.Cancel, apperr.Forbidden},   // receiver may not cancel
		{admin, referral.Accept, apperr.Forbidden},  // admin sees but may not act
		{tclerk, referral.Accept, apperr.Forbidden}, // wrong role at the right facility
	}
	for _, c := range cases {
		_, err := b.svc.Act(ctxFor(c.who), c.who, r.ID, c.a, actionBody(c.a, r.Version))
		if got := apperr.CodeOf(err); got != c.code {
			t.Errorf("%s %s: %v, want %s", c.who.Role, c.a, err, c.code)
		}
	}
	// Another doctor of the sending facility may cancel ("same facility").
	_, err := b.svc.Act(ctxFor(vdoc2), vdoc2, r.ID, referral.Cancel, actionBody(referral.Cancel, r.Version+1))
	if e, ok := apperr.As(err); !ok || e.Code != apperr.Conflict || e.Details["version"] != 1 {
		t.Fatalf("stale version: %v", err)
	}
	if out := b.act(t, vdoc2, r, referral.Cancel); out.State != referral.Cancelled {
		t.Fatalf("cancel by a colleague: %+v", out)
	}
	// Decline needs a reason; complete a counter-referral.
	r2 := b.create(t, vdoc, township, referral.Urgent)
	if _, err := b.svc.Act(ctxFor(tdoc), tdoc, r2.ID, referral.Decline, referral.ActionRequest{Version: ptr(1)}); apperr.CodeOf(err) != apperr.Invalid {
		t.Fatalf("decline without reason: %v", err)
	}
	if _, err := b.svc.Act(ctxFor(tdoc), tdoc, r2.ID, referral.Accept, referral.ActionRequest{}); apperr.CodeOf(err) != apperr.Invalid {
		t.Fatalf("accept without version: %v", err)
	}
}

// 50 doctors of the receiving facility accept the same referral at once:
// exactly one wins, 49 get 409.
func TestConcurrentAcceptsOneWins(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noHub: true})
	vdoc := b.user(t, auth.RoleVillageDoctor, village)
	var docs []*auth.Principal
	for range 50 {
		docs = append(docs, b.user(t, auth.RoleDoctor, township))
	}
	r := b.create(t, vdoc, township, referral.Emergency)

	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make([]int, len(docs))
	for i, d := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var eb errBody
			resp := b.do(t, d, "POST", fmt.Sprintf("/api/v1/referrals/%d/accept", r.ID), map[string]any{"version": 1}, &eb)
			codes[i] = resp.StatusCode
			if resp.StatusCode == 409 && (eb.Error.Details["state"] != "accepted" || eb.Error.Details["version"] != float64(2)) {
				t.Errorf("409 details %v", eb.Error.Details)
			}
		}()
	}
	close(start)
	wg.Wait()
	won, lost := 0, 0
	for _, c := range codes {
		switch c {
		case 200:
			won++
		case 409:
			lost++
		default:
			t.Errorf("status %d", c)
		}
	}
	if won != 1 || lost != 49 {
		t.Fatalf("%d won, %d got 409", won, lost)
	}
	evs, err := referral.Store{}.Events(ctxFor(vdoc), b.pool, r.ID)
	if err != nil || len(evs) != 2 || evs[1].Action != "accept" {
		t.Fatalf("events %+v %v", evs, err)
	}
}

func TestTargetRules(t *testing.T) {
	t.Parallel()
	f := func(code string, tier facility.Tier, parent, region string) facility.Facility {
		return facility.Facility{Code: code, Tier: tier, ParentCode: parent, RegionCode: region}
	}
	cityF := f("C1", facility.City, "", "420600")
	countyA := f("KA", facility.County, "C1", "420626")
	countyB := f("KB", facility.County, "C1", "420625")
	townA := f("TA", facility.Township, "KA", "420626")
	townA2 := f("TA2", facility.Township, "KA", "420626")
	townB := f("TB", facility.Township, "KB", "420625")
	villA := f("VA", facility.Village, "TA", "420626")
	chain := func(fs ...facility.Facility) []facility.Facility { return fs }
	tests := []struct {
		name     string
		from, to []facility.Facility
		dir      referral.Direction
		ok       bool
	}{
		{"village to own township", chain(villA, townA, countyA, cityF), chain(townA, countyA, cityF), referral.Up, true},
		{"village to county", chain(villA, townA, countyA, cityF), chain(countyA, cityF), referral.Up, true},
		{"village to city", chain(villA, townA, countyA, cityF), chain(cityF), referral.Up, true},
		{"village to other county's township", chain(villA, townA, countyA, cityF), chain(townB, countyB, cityF), referral.Up, false},
		{"village to other region's county", chain(villA, townA, countyA, cityF), chain(countyB, cityF), referral.Up, false},
		{"township to township same region", chain(townA, countyA, cityF), chain(townA2, countyA, cityF), referral.Lateral, true},
		{"township to township other region", chain(townA, countyA, cityF), chain(townB, countyB, cityF), referral.Lateral, false},
		{"county down to its village", chain(countyA, cityF), chain(villA, townA, countyA, cityF), referral.Down, true},
		{"city down anywhere", chain(cityF), chain(townB, countyB, cityF), referral.Down, true},
		{"other county down", chain(countyB, cityF), chain(villA, townA, countyA, cityF), referral.Down, false},
		{"to itself", chain(townA, countyA, cityF), chain(townA, countyA, cityF), "", false},
	}
	for _, tt := range tests {
		dir, ok := referral.TargetAllowed(tt.from, tt.to)
		if dir != tt.dir || ok != tt.ok {
			t.Errorf("%s: %s %v, want %s %v", tt.name, dir, ok, tt.dir, tt.ok)
		}
	}
}
