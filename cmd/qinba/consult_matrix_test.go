package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
)

// conOpts describes a consult fixture, inserted directly (as the schema
// owner) so the matrix can put one in any state.
type conOpts struct {
	From, To    string
	RequesterID int64 // 0: a new user of From
	State       string
	Participant int64 // a user who joined (0: none)
	Fee         bool  // an ended consult's fee line
	Recording   bool  // a recorded track (file under the server's recordings dir)
}

func userID(t *testing.T, ts *testServer, username string) int64 {
	t.Helper()
	u, err := auth.GetUserByName(context.Background(), ts.Pool, username)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// conFixture inserts a consult and returns its id (and the recording id
// when o.Recording).
func conFixture(t *testing.T, ts *testServer, o conOpts) (id, rid int64) {
	t.Helper()
	ctx := context.Background()
	village := o.From
	if !strings.HasPrefix(village, "V") {
		village = facVillage
	}
	person := refPerson(t, ts, village)
	if o.RequesterID == 0 {
		name, _ := ts.user(t, senderRole(o.From), o.From)
		o.RequesterID = userID(t, ts, name)
	}
	now := time.Now()
	var started, ended *time.Time
	switch o.State {
	case "live":
		started = &now
	case "ended":
		started, ended = &now, &now
	case "cancelled":
		ended = &now
	}
	if err := ts.Owner.QueryRow(ctx, `INSERT INTO consult (person_id, requester_id, from_facility, to_facility, reason, state, created_at, updated_at, started_at, ended_at)
		VALUES ($1, $2, $3, $4, '胸闷气短两天', $5, $6, $6, $7, $8) RETURNING id`,
		person, o.RequesterID, o.From, o.To, o.State, now, started, ended).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if o.Participant != 0 {
		if _, err := ts.Owner.Exec(ctx, `INSERT INTO consult_participant (consult_id, user_id, first_joined_at, last_joined_at) VALUES ($1, $2, $3, $3)`,
			id, o.Participant, now); err != nil {
			t.Fatal(err)
		}
	}
	if o.Fee {
		if _, err := ts.Owner.Exec(ctx, `INSERT INTO consult_fee (consult_id, person_id, facility_code, item_code, item_name, class, quantity, unit_price, amount, fee_table, created_at)
			VALUES ($1, $2, $3, 'X1', '远程视频会诊', 'A', 1, 10, 10, 'test', $4)`, id, person, o.To, now); err != nil {
			t.Fatal(err)
		}
	}
	if o.Recording {
		dir := filepath.Join(ts.App.Config.VarDir, "recordings", fmt.Sprint(id))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "a.ogg")
		if err := os.WriteFile(path, []byte("OggS"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := ts.Owner.QueryRow(ctx, `INSERT INTO consult_recording (consult_id, user_id, kind, mime_type, path, started_at, ended_at, frames, dropped)
			VALUES ($1, $2, 'audio', 'audio/opus', $3, $4, $4, 1, 0) RETURNING id`, id, o.Participant, path, now).Scan(&rid); err != nil {
			t.Fatal(err)
		}
	}
	return id, rid
}

// The consult routes' rows of the authorisation matrix. "Own" is a consult
// between facilities of the caller: V420626-001 → T420626-01 (the village
// doctor requested it, the township doctor is addressed, the county
// admin's region holds it), or T420626-01 → K420626-01 for callers at the
// county (billing clerk); "other" is V420625-001 → T420625-01: 404.
func init() {
	senders := []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor}
	readers := []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleAdmin}
	billing := []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleAdmin, auth.RoleBillingClerk}
	doctors := []auth.Role{auth.RoleDoctor}

	// fixture builds the caller's consult in state; the caller is its
	// requester when a village doctor, its addressee when a doctor, and a
	// participant.
	fixture := func(t *testing.T, ts *testServer, u matrixUser, own bool, o conOpts) (int64, int64) {
		o.From, o.To = facVillage, facTownship
		if u.Facility == facCounty {
			o.From, o.To = facTownship, facCounty
		}
		if !own {
			o.From, o.To = facOtherVillage, facOtherTown
		}
		uid := userID(t, ts, u.Username)
		if own && u.Role == auth.RoleVillageDoctor {
			o.RequesterID = uid
		}
		o.Participant = uid
		return conFixture(t, ts, o)
	}
	path := func(state, suffix string, body any) func(*testing.T, *testServer, matrixUser, bool) matrixReq {
		return func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			id, _ := fixture(t, ts, u, own, conOpts{State: state})
			return matrixReq{Path: fmt.Sprintf("/api/v1/consults/%d%s", id, suffix), Body: body}
		}
	}
	addRouteAccess(map[string]routeRule{
		"POST /api/v1/consults": {Roles: senders, OK: http.StatusCreated,
			Req: func(t *testing.T, ts *testServer, u matrixUser, _ bool) matrixReq {
				return matrixReq{Path: "/api/v1/consults", Body: map[string]any{"person_id": refPerson(t, ts, facVillage),
					"to_facility": facCounty, "reason": "胸闷气短两天，请上级会诊"}}
			}},
		"GET /api/v1/consults":                {Roles: readers, Req: reqPath("/api/v1/consults?box=incoming")},
		"GET /api/v1/consults/:id":            {Roles: readers, Other: http.StatusNotFound, Req: path("requested", "", nil)},
		"POST /api/v1/consults/:id/cancel":    {Roles: senders, Other: http.StatusNotFound, Req: path("requested", "/cancel", nil)},
		"POST /api/v1/consults/:id/end":       {Roles: senders, Other: http.StatusNotFound, Req: path("live", "/end", nil)},
		"PUT /api/v1/consults/:id/notes":      {Roles: doctors, Other: http.StatusNotFound, Req: path("live", "/notes", map[string]string{"notes": "心电图正常", "advice": "门诊随访"})},
		"POST /api/v1/consults/:id/token":     {Roles: senders, Other: http.StatusNotFound, Req: path("requested", "/token", nil)},
		"POST /api/v1/consults/:id/recording": {Roles: senders, Other: http.StatusNotFound, Req: path("live", "/recording", map[string]bool{"consent": true})},
		"GET /api/v1/consults/:id/recordings": {Roles: senders, Other: http.StatusNotFound, Req: path("ended", "/recordings", nil)},
		"GET /api/v1/consults/:id/recordings/:rid": {Roles: senders, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				id, rid := fixture(t, ts, u, own, conOpts{State: "ended", Recording: true})
				return matrixReq{Path: fmt.Sprintf("/api/v1/consults/%d/recordings/%d", id, rid)}
			}},
		"POST /api/v1/consults/:id/referral": {Roles: senders, OK: http.StatusCreated, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				o := conOpts{State: "ended", From: facVillage, To: facTownship}
				if u.Role == auth.RoleDoctor {
					o.From, o.To = facTownship, facCounty // the township doctor's own consult
				}
				if !own {
					o.From, o.To = facOtherVillage, facOtherTown
				} else {
					o.RequesterID = userID(t, ts, u.Username)
				}
				id, _ := conFixture(t, ts, o)
				return matrixReq{Path: fmt.Sprintf("/api/v1/consults/%d/referral", id), Body: map[string]any{"urgency": "routine", "diagnoses": []string{"I20.0"}}}
			}},
		"GET /api/v1/consults/:id/fee": {Roles: billing, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				id, _ := fixture(t, ts, u, own, conOpts{State: "ended", Fee: true})
				return matrixReq{Path: fmt.Sprintf("/api/v1/consults/%d/fee", id)}
			}},
		// The signalling WebSocket takes room tokens only: an access token
		// (any role's) is refused like no token at all.
		"GET /api/v1/consults/:id/signal": {OK: http.StatusUnauthorized},
	})
}
