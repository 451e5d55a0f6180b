package consult_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/consult"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/dbtest"
)

// Demo network: V420626-001 under T420626-01 under K420626-01.
const (
	village  = "V420626-001"
	village2 = "V420626-021" // under another township
	township = "T420626-01"
	county   = "K420626-01"
	county2  = "K420626-02"
)

type recBundle struct {
	owner, pool *pgxpool.Pool
	svc         *consult.Service
	seq         atomic.Int64
}

func recSetup(t *testing.T) *recBundle {
	t.Helper()
	owner, pool := dbtest.NewApp(t)
	if _, err := facility.Import(context.Background(), owner, bytes.NewReader(facility.DemoCSV)); err != nil {
		t.Fatal(err)
	}
	svc, err := consult.NewService(consult.ServiceConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	return &recBundle{owner: owner, pool: pool, svc: svc}
}

// user inserts a user and returns its principal.
func (b *recBundle) user(t *testing.T, role auth.Role, fac string) *auth.Principal {
	t.Helper()
	ctx := context.Background()
	p := &auth.Principal{Username: fmt.Sprintf("u%d.%s", b.seq.Add(1), strings.ReplaceAll(string(role), "_", "-")), Role: role, Facility: fac}
	if err := b.owner.QueryRow(ctx, `INSERT INTO app_user (username, password_hash, role, facility_code) VALUES ($1, '$argon2id$x', $2, $3) RETURNING id`,
		p.Username, role, fac).Scan(&p.UserID); err != nil {
		t.Fatal(err)
	}
	if err := b.owner.QueryRow(ctx, `SELECT tier, region_code FROM facility WHERE code = $1`, fac).Scan(&p.Tier, &p.Region); err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *recBundle) person(t *testing.T, vil string) int64 {
	t.Helper()
	ctx := context.Background()
	n := b.seq.Add(1)
	hh := fmt.Sprintf("CHH-%d", n)
	if _, err := b.owner.Exec(ctx, `INSERT INTO household (id, village_code, category) VALUES ($1, $2, 'none')`, hh, vil); err != nil {
		t.Fatal(err)
	}
	id17 := fmt.Sprintf("42062619800101%03d", n%1000)
	var id int64
	if err := b.owner.QueryRow(ctx, `INSERT INTO person (national_id, name, household_id, relation) VALUES ($1, '孙七', $2, 'head') RETURNING id`,
		id17+string(household.CheckChar(id17)), hh).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func wantCode(t *testing.T, err error, code apperr.Code) {
	t.Helper()
	if !apperr.Is(err, code) {
		t.Fatalf("error %v, want %s", err, code)
	}
}

func TestFeeTable(t *testing.T) {
	t.Parallel()
	ft, err := consult.ParseFees(consult.DefaultFeesJSON)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := ft.Lookup(facility.Village, facility.County); !ok || f.Price != "30.00" || f.Class != "A" {
		t.Errorf("village → county: %+v %v", f, ok)
	}
	if _, ok := ft.Lookup(facility.County, facility.Village); ok {
		t.Error("a downward fee exists")
	}
	entry := `{"from_tier":"village","to_tier":"county","item_code":"X","name":"n","class":"A","price":"1.00"}`
	for name, body := range map[string]string{
		"not higher": `{"version":"v","fees":[{"from_tier":"county","to_tier":"village","item_code":"X","name":"n","class":"A","price":"1"}]}`,
		"bad class":  `{"version":"v","fees":[{"from_tier":"village","to_tier":"county","item_code":"X","name":"n","class":"D","price":"1"}]}`,
		"bad price":  `{"version":"v","fees":[{"from_tier":"village","to_tier":"county","item_code":"X","name":"n","class":"A","price":"1.005"}]}`,
		"duplicate":  `{"version":"v","fees":[` + entry + `,` + entry + `]}`,
		"no version": `{"fees":[]}`,
		"unknown":    `{"version":"v","fees":[],"x":1}`,
	} {
		if _, err := consult.ParseFees([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConsultRecords(t *testing.T) {
	t.Parallel()
	b := recSetup(t)
	ctx := context.Background()
	vd := b.user(t, auth.RoleVillageDoctor, village)
	cd := b.user(t, auth.RoleDoctor, county)
	cd2 := b.user(t, auth.RoleDoctor, county)
	other := b.user(t, auth.RoleDoctor, county2)
	colleague := b.user(t, auth.RoleVillageDoctor, village)
	td := b.user(t, auth.RoleDoctor, township)
	pid := b.person(t, village)

	t.Run("create rules", func(t *testing.T) {
		_, _, err := b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToFacility: village2, Reason: "r"}, "")
		wantCode(t, err, apperr.Invalid) // not a higher tier
		_, _, err = b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: b.person(t, village2), ToFacility: county, Reason: "r"}, "")
		wantCode(t, err, apperr.NotFound) // a patient the village doctor may not see
		_, _, err = b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToFacility: county, Reason: " "}, "")
		wantCode(t, err, apperr.Invalid)
		_, _, err = b.svc.Create(ctx, cd, consult.CreateRequest{PersonID: pid, ToFacility: county2, Reason: "r"}, "")
		wantCode(t, err, apperr.Invalid) // county → county
		past := time.Now().Add(-time.Hour)
		_, _, err = b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToFacility: county, Reason: "r", ScheduledAt: &past}, "")
		wantCode(t, err, apperr.Invalid)
		// A named doctor decides the facility.
		c, created, err := b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToUserID: &cd.UserID, Reason: "r"}, "")
		if err != nil || !created || c.ToFacility.Code != county || c.ToUserID == nil || *c.ToUserID != cd.UserID {
			t.Fatalf("named doctor: %+v %v %v", c, created, err)
		}
		// Only the named doctor joins.
		if _, err := b.svc.JoinCheck(ctx, cd, c.ID); err != nil {
			t.Errorf("named doctor: %v", err)
		}
		_, err = b.svc.JoinCheck(ctx, cd2, c.ID)
		wantCode(t, err, apperr.Forbidden)
		_, _, err = b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToUserID: &vd.UserID, Reason: "r"}, "")
		wantCode(t, err, apperr.Invalid) // not a doctor
	})

	t.Run("idempotency", func(t *testing.T) {
		req := consult.CreateRequest{PersonID: pid, ToFacility: county, Reason: "发热三天"}
		a, created, err := b.svc.Create(ctx, vd, req, "k1")
		if err != nil || !created {
			t.Fatal(err)
		}
		again, created, err := b.svc.Create(ctx, vd, req, "k1")
		if err != nil || created || again.ID != a.ID {
			t.Fatalf("replay: %d %v %v", again.ID, created, err)
		}
		req.Reason = "别的"
		_, _, err = b.svc.Create(ctx, vd, req, "k1")
		wantCode(t, err, apperr.Conflict)
	})

	t.Run("state machine", func(t *testing.T) {
		c, _, err := b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToFacility: county, Reason: "胸痛"}, "")
		if err != nil {
			t.Fatal(err)
		}
		// Who may see and join.
		_, err = b.svc.Get(ctx, other, c.ID)
		wantCode(t, err, apperr.NotFound)
		_, err = b.svc.JoinCheck(ctx, other, c.ID)
		wantCode(t, err, apperr.NotFound)
		_, err = b.svc.JoinCheck(ctx, colleague, c.ID)
		wantCode(t, err, apperr.Forbidden)
		_, err = b.svc.JoinCheck(ctx, td, c.ID) // the township in between sees nothing
		wantCode(t, err, apperr.NotFound)
		for _, p := range []*auth.Principal{vd, cd, cd2} {
			if _, err := b.svc.JoinCheck(ctx, p, c.ID); err != nil {
				t.Errorf("%s may join: %v", p.Username, err)
			}
		}
		// Not live yet: no end, no notes.
		_, err = b.svc.End(ctx, cd, c.ID)
		wantCode(t, err, apperr.Conflict)
		_, err = b.svc.SetNotes(ctx, cd, c.ID, consult.NotesRequest{Advice: "x"})
		wantCode(t, err, apperr.Conflict)

		h := b.svc.Hooks()
		if err := h.Admit(ctx, consult.RoomID(c.ID), vd.Username); err != nil {
			t.Fatal(err)
		}
		if err := h.Admit(ctx, consult.RoomID(c.ID), colleague.Username); !apperr.Is(err, apperr.Forbidden) {
			t.Errorf("admit colleague: %v", err)
		}
		h.OnJoin(consult.RoomID(c.ID), vd.Username)
		h.OnJoin(consult.RoomID(c.ID), cd.Username)
		h.OnLeave(consult.RoomID(c.ID), cd.Username, consult.LeaveLeft)
		got, err := b.svc.Get(ctx, vd, c.ID)
		if err != nil || got.State != consult.Live || got.StartedAt == nil || len(got.Participants) != 2 {
			t.Fatalf("after join: %+v %v", got, err)
		}
		if got.Participants[1].LeftAt == nil {
			t.Error("leave not recorded")
		}
		_, err = b.svc.Cancel(ctx, vd, c.ID)
		wantCode(t, err, apperr.Conflict) // live consults end, not cancel

		_, err = b.svc.SetNotes(ctx, vd, c.ID, consult.NotesRequest{Advice: "x"})
		wantCode(t, err, apperr.Forbidden)
		if got, err = b.svc.SetNotes(ctx, cd2, c.ID, consult.NotesRequest{Notes: "ST 段压低", Advice: "转诊"}); err != nil || got.Advice != "转诊" {
			t.Fatalf("notes: %+v %v", got, err)
		}
		_, err = b.svc.End(ctx, colleague, c.ID)
		wantCode(t, err, apperr.Forbidden)
		if got, err = b.svc.End(ctx, vd, c.ID); err != nil || got.State != consult.Ended || got.EndedAt == nil {
			t.Fatalf("end: %+v %v", got, err)
		}
		fee, err := b.svc.Fee(ctx, cd, c.ID)
		if err != nil || fee.Amount != "30.00" || fee.UnitPrice != "30.00" || fee.Quantity != "1" || fee.Facility != county || fee.PersonID != pid {
			t.Fatalf("fee: %+v %v", fee, err)
		}
		_, err = b.svc.Fee(ctx, other, c.ID)
		wantCode(t, err, apperr.NotFound)
		_, err = b.svc.End(ctx, vd, c.ID)
		wantCode(t, err, apperr.Conflict)
		if err := h.Admit(ctx, consult.RoomID(c.ID), vd.Username); !apperr.Is(err, apperr.Conflict) {
			t.Errorf("admit after the end: %v", err)
		}
		// The fee line is append-only.
		if _, err := b.pool.Exec(ctx, `UPDATE consult_fee SET amount = 0 WHERE consult_id = $1`, c.ID); err == nil {
			t.Error("fee line updated")
		}
		// Notes may still be written after the end.
		if _, err := b.svc.SetNotes(ctx, cd, c.ID, consult.NotesRequest{Advice: "补充"}); err != nil {
			t.Error(err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		c, _, err := b.svc.Create(ctx, vd, consult.CreateRequest{PersonID: pid, ToFacility: township, Reason: "咳嗽"}, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.svc.Cancel(ctx, cd, c.ID)
		wantCode(t, err, apperr.NotFound) // not addressed to the county
		got, err := b.svc.Cancel(ctx, td, c.ID)
		if err != nil || got.State != consult.Cancelled {
			t.Fatalf("cancel: %+v %v", got, err)
		}
		_, err = b.svc.Cancel(ctx, vd, c.ID)
		wantCode(t, err, apperr.Conflict)
		_, err = b.svc.Fee(ctx, vd, c.ID)
		wantCode(t, err, apperr.NotFound)
	})

	t.Run("lists", func(t *testing.T) {
		in, err := b.svc.List(ctx, cd, "incoming", 100)
		if err != nil || len(in) == 0 {
			t.Fatalf("incoming: %d %v", len(in), err)
		}
		for _, c := range in {
			if c.ToFacility.Code != county {
				t.Errorf("incoming %d to %s", c.ID, c.ToFacility.Code)
			}
		}
		out, err := b.svc.List(ctx, cd, "outgoing", 100)
		if err != nil || len(out) != 0 {
			t.Errorf("county outgoing: %d %v", len(out), err)
		}
		all, err := b.svc.List(ctx, vd, "", 100)
		if err != nil || len(all) < len(in) {
			t.Errorf("village all: %d %v", len(all), err)
		}
		_, err = b.svc.List(ctx, vd, "inbox", 10)
		wantCode(t, err, apperr.Invalid)
	})
}
