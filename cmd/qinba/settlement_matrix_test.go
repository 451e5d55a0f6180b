package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/qinba/qinba/auth"
)

// The settlement routes in the authorisation matrix. Billing clerks work
// on their own facility's bills; admins read their region; doctors (and
// clerks) estimate. A bill of another facility is 404 (a patient's bill
// must not leak). Settle and reverse need an Idempotency-Key, which the
// matrix does not send: an allowed caller at its own facility gets 428
// (the scope is checked first, so another facility's record is still 404).
func init() {
	clerk := []auth.Role{auth.RoleBillingClerk}
	readers := []auth.Role{auth.RoleBillingClerk, auth.RoleAdmin}
	// otherFac is where a record of "another facility" is: for an admin
	// another region, for anyone else another facility of the region.
	otherFac := func(u matrixUser, own bool, sameRegion string) string {
		switch {
		case own:
			return u.Facility
		case u.Role == auth.RoleAdmin:
			return facOtherCounty
		}
		return sameRegion
	}
	addRouteAccess(map[string]routeRule{
		"POST /api/v1/bills": {Roles: clerk, OK: http.StatusCreated, Other: http.StatusForbidden,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				_, ids := stlHousehold(t, ts, facVillage, "registered_poor", "head")
				return matrixReq{Path: "/api/v1/bills", Body: stlInpatient(ids[0], otherFac(u, own, facCounty2), "2019-05-01", "2019-05-03", stlLine("A", "900"))}
			}},
		"GET /api/v1/bills": {Roles: readers,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				svc := stlSvc(t, ts)
				mine, theirs := stlBill(t, ts, svc, facCounty), stlBill(t, ts, svc, facOtherCounty)
				return matrixReq{Path: "/api/v1/bills?limit=500", Check: func(t *testing.T, _ int, b map[string]any) {
					seen := map[int64]bool{}
					bills, _ := b["bills"].([]any)
					for _, x := range bills {
						m := x.(map[string]any)
						seen[int64(m["id"].(float64))] = true
						if f := m["facility"]; u.Role == auth.RoleBillingClerk && f != u.Facility {
							t.Errorf("%s sees a bill of %s", u.Role, f)
						}
					}
					if !seen[mine] || seen[theirs] {
						t.Errorf("%s: sees own bill %v, other region's %v", u.Role, seen[mine], seen[theirs])
					}
				}}
			}},
		"POST /api/v1/bills/import": {Roles: clerk, Other: http.StatusBadRequest,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				_, ids := stlHousehold(t, ts, facVillage, "none", "head")
				fac := otherFac(u, own, facCounty2)
				body := "external_no,facility_code,person_id,national_id,kind,admitted_on,discharged_on,visit_on,emergency,referral_id,item_code,item_name,class,quantity,unit_price,amount\n" +
					fmt.Sprintf("M%d,%s,%d,,inpatient,2019-04-01,2019-04-02,,false,,X1,床位费,A,2,30,60.00\n", ts.seq.Add(1), fac, ids[0])
				return matrixReq{Path: "/api/v1/bills/import", ContentType: "text/csv", Body: body}
			}},
		"POST /api/v1/bills/estimate": {Roles: []auth.Role{auth.RoleBillingClerk, auth.RoleDoctor}, Other: http.StatusForbidden,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				_, ids := stlHousehold(t, ts, facVillage, "dibao", "head")
				fac := u.Facility
				if !own {
					fac = map[auth.Role]string{auth.RoleDoctor: facTownship2}[u.Role]
					if fac == "" {
						fac = facCounty2
					}
				}
				return matrixReq{Path: "/api/v1/bills/estimate", Body: stlInpatient(ids[0], fac, "2019-05-01", "2019-05-03", stlLine("A", "900"))}
			}},
		"GET /api/v1/bills/:id": {Roles: readers, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				return matrixReq{Path: fmt.Sprintf("/api/v1/bills/%d", stlBill(t, ts, stlSvc(t, ts), otherFac(u, own, facCounty2)))}
			}},
		"POST /api/v1/bills/:id/settle": {Roles: clerk, OK: http.StatusPreconditionRequired, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				return matrixReq{Path: fmt.Sprintf("/api/v1/bills/%d/settle", stlBill(t, ts, stlSvc(t, ts), otherFac(u, own, facCounty2)))}
			}},
		"GET /api/v1/settlements/:id": {Roles: readers, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				return matrixReq{Path: fmt.Sprintf("/api/v1/settlements/%d", stlSettled(t, ts, stlSvc(t, ts), otherFac(u, own, facCounty2)))}
			}},
		"POST /api/v1/settlements/:id/reverse": {Roles: clerk, OK: http.StatusPreconditionRequired, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				return matrixReq{Path: fmt.Sprintf("/api/v1/settlements/%d/reverse", stlSettled(t, ts, stlSvc(t, ts), otherFac(u, own, facCounty2))),
					Body: map[string]string{"reason": "matrix"}}
			}},
		"POST /api/v1/clearing": {Roles: readers, OK: http.StatusCreated, Other: http.StatusForbidden,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				return matrixReq{Path: "/api/v1/clearing", Body: map[string]string{"period": stlPeriod(ts), "facility": otherFac(u, own, facCounty2)}}
			}},
		"GET /api/v1/clearing/:id": {Roles: readers, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				return matrixReq{Path: fmt.Sprintf("/api/v1/clearing/%d", stlCleared(t, ts, stlSvc(t, ts), otherFac(u, own, facCounty2)))}
			}},
		"GET /api/v1/households/:id/statement": {Roles: readers, Other: http.StatusNotFound,
			Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
				village := facVillage
				if !own {
					village = facOtherVillage
				}
				hh, _ := stlHousehold(t, ts, village, "tekun", "head", "spouse")
				return matrixReq{Path: "/api/v1/households/" + hh + "/statement?year=2019"}
			}},
	})
}
