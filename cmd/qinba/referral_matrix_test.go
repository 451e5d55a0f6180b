package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/qinba/qinba/auth"
)

// The referral routes' rows of the authorisation matrix (routeAccess in
// auth_matrix_test.go). A record of the caller's "own" facility is a
// referral V420626-001 → T420626-01 (the village doctor sends it, the
// township doctor receives it, the county admin's region holds it);
// "other" is one between two facilities of region 420625, which none of
// the callers may see: 404.
func init() {
	senders := []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor}
	readers := []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleAdmin}
	doctors := []auth.Role{auth.RoleDoctor}

	ends := func(own bool) (string, string) {
		if own {
			return facVillage, facTownship
		}
		return facOtherVillage, facOtherTown
	}
	// action builds the request for POST /referrals/:id/<action> on a
	// referral in state.
	action := func(name, state string) func(*testing.T, *testServer, matrixUser, bool) matrixReq {
		return func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			from, to := ends(own)
			if name == "cancel" && own && u.Role == auth.RoleDoctor {
				from, to = facTownship, facCounty // the township doctor sends this one
			}
			id, v := refInState(t, ts, from, to, state)
			return matrixReq{Path: fmt.Sprintf("/api/v1/referrals/%d/%s", id, name), Body: refBody(name, v)}
		}
	}
	rules := map[string]routeRule{
		"POST /api/v1/referrals": {Roles: senders, OK: http.StatusCreated,
			Req: func(t *testing.T, ts *testServer, u matrixUser, _ bool) matrixReq {
				to := facTownship
				if u.Facility == facTownship {
					to = facCounty
				}
				return matrixReq{Path: "/api/v1/referrals", Body: map[string]any{"person_id": refPerson(t, ts, facVillage),
					"to_facility": to, "urgency": "routine", "diagnoses": []string{"J18"}, "summary": "发热"}}
			}},
		"GET /api/v1/referrals":       {Roles: readers, Req: reqPath("/api/v1/referrals?box=inbox")},
		"GET /api/v1/referrals/stats": {Roles: readers, Req: reqPath("/api/v1/referrals/stats?month=2019-11")},
		// The stream never ends; a bad resume point shows the route let
		// the caller through (400) without opening it.
		"GET /api/v1/referrals/stream": {Roles: readers, OK: http.StatusBadRequest, Req: reqPath("/api/v1/referrals/stream?last_event_id=x")},
		"GET /api/v1/referrals/:id": {Roles: readers, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				from, to := ends(own)
				id, _ := refInState(t, ts, from, to, "sent")
				return matrixReq{Path: fmt.Sprintf("/api/v1/referrals/%d", id)}
			}},
		"POST /api/v1/referrals/:id/accept":   {Roles: doctors, Other: http.StatusNotFound, Req: action("accept", "sent")},
		"POST /api/v1/referrals/:id/decline":  {Roles: doctors, Other: http.StatusNotFound, Req: action("decline", "sent")},
		"POST /api/v1/referrals/:id/schedule": {Roles: doctors, Other: http.StatusNotFound, Req: action("schedule", "accepted")},
		"POST /api/v1/referrals/:id/arrive":   {Roles: doctors, Other: http.StatusNotFound, Req: action("arrive", "scheduled")},
		"POST /api/v1/referrals/:id/complete": {Roles: doctors, Other: http.StatusNotFound, Req: action("complete", "arrived")},
		"POST /api/v1/referrals/:id/cancel":   {Roles: senders, Other: http.StatusNotFound, Req: action("cancel", "sent")},
		"POST /api/v1/referrals/:id/attachments": {Roles: senders, OK: http.StatusCreated, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				from, to := ends(own)
				id, _ := refInState(t, ts, from, to, "sent")
				ct, body := refMultipart("scan.pdf", refPDF)
				return matrixReq{Path: fmt.Sprintf("/api/v1/referrals/%d/attachments", id), ContentType: ct, Body: body}
			}},
		"GET /api/v1/referrals/:id/attachments/:aid": {Roles: readers, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				from, to := ends(own)
				sender := ts.as(t, senderRole(from), from)
				id := refCreate(t, ts, sender, from, to)
				aid := refAttach(t, ts, sender, id)
				return matrixReq{Path: fmt.Sprintf("/api/v1/referrals/%d/attachments/%d", id, aid)}
			}},
		"GET /api/v1/notifications": {Roles: everyRole},
	}
	for k, r := range rules {
		routeAccess[k] = r
	}
}
