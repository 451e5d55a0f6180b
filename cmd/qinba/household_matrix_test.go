package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
)

// The household routes' rows of the authorisation matrix
// (auth_matrix_test.go). A person's records belong to their home village:
// its users, the facilities above it and an admin of its region see them
// (every matrix caller's home is V420626-001 or above); a person of
// another region is "not found". Auditors read the log, not records.
func init() {
	readers := []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleBillingClerk, auth.RoleAdmin}
	// person picks the fixture's person of the caller's own village, or
	// of the other region.
	person := func(t *testing.T, ts *testServer, own bool) int64 {
		loadE2ERoster(t, ts)
		if own {
			return ts.personID(t, e2eHead)
		}
		return ts.personID(t, e2eOther)
	}
	routeAccess["GET /api/v1/persons/:id"] = routeRule{Roles: readers, Other: http.StatusNotFound,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			return matrixReq{Path: "/api/v1/persons/" + strconv.FormatInt(person(t, ts, own), 10)}
		}}
	routeAccess["GET /api/v1/persons"] = routeRule{Roles: readers, Other: http.StatusOK,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			id := person(t, ts, own)
			hh := "E1"
			if !own {
				hh = "E2"
			}
			return matrixReq{Path: "/api/v1/persons?household=" + hh, Check: func(t *testing.T, _ int, b map[string]any) {
				found := false
				for _, p := range b["persons"].([]any) {
					m := p.(map[string]any)
					found = found || int64(m["id"].(float64)) == id
					if !strings.Contains(m["national_id"].(string), "********") {
						t.Errorf("list shows %v unmasked", m["national_id"])
					}
				}
				if found != own {
					t.Errorf("%s (own=%v) sees the person: %v", u.Role, own, found)
				}
			}}
		}}
	routeAccess["GET /api/v1/households/:id"] = routeRule{Roles: readers, Other: http.StatusNotFound,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			loadE2ERoster(t, ts)
			if own {
				return matrixReq{Path: "/api/v1/households/E1"}
			}
			return matrixReq{Path: "/api/v1/households/E2"}
		}}
	routeAccess["POST /api/v1/households/import"] = routeRule{Roles: []auth.Role{auth.RoleBillingClerk, auth.RoleAdmin},
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			// A household of its own, so the import does not clash with
			// the other rows' fixture.
			id := withCheckChar("42062619900101" + strconv.Itoa(100+int(ts.seq.Add(1))%900))
			return matrixReq{Path: "/api/v1/households/import", ContentType: "text/csv",
				Body: "household_id,national_id,name,relation,village_code,category,insured\nM" + id[14:17] + "," + id + ",矩阵,head," + facVillage + ",none,true\n"}
		}}
}

// loadE2ERoster imports the end-to-end fixture (idempotent).
func loadE2ERoster(t *testing.T, ts *testServer) {
	t.Helper()
	if _, err := household.Import(context.Background(), ts.Pool, strings.NewReader(e2eRoster), household.Options{Year: 2024, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
}
