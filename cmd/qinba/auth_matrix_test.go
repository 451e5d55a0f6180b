package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
)

// The authorisation matrix: every route × every role × own/other facility.
//
// routeAccess lists every /api/v1 route ("METHOD /path" exactly as
// registered, with :params) and how it answers each role. A route missing
// from the table fails TestAuthMatrix with its name: when you add routes,
// add their rules from a test file of your own:
//
//	func init() {
//		addRouteAccess(map[string]routeRule{
//			"GET /api/v1/persons/:id": {Roles: []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor},
//				Other: http.StatusNotFound, Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
//					f := u.Facility
//					if !own {
//						f = facOtherVillage
//					}
//					return matrixReq{Path: "/api/v1/persons/" + makePerson(t, ts, f)}
//				}},
//		})
//	}
//
// Routes that need no token are listed in publicRoutes (addPublicRoutes);
// every other route, wherever it is mounted, must answer 401 without one.

// publicRoutes answer without a token. Everything else must say 401.
var publicRoutes = map[string]string{
	"GET /healthz":               "liveness",
	"GET /readyz":                "readiness",
	"GET /metrics":               "Prometheus (loopback only)",
	"GET /api/openapi.json":      "API document",
	"GET /.well-known/jwks.json": "public keys",
	"POST /api/v1/auth/login":    "login",
	"POST /api/v1/auth/refresh":  "refresh (the refresh token is the credential)",
	// The web UI (package web): the shell, its assets and the cookie
	// session endpoints, which hold their own credentials.
	"GET /":                     "UI shell",
	"HEAD /":                    "UI shell",
	"GET /index.html":           "UI shell",
	"GET /assets/:v/*":          "UI assets",
	"HEAD /assets/:v/*":         "UI assets",
	"GET /favicon.ico":          "UI icon",
	"POST /web/session":         "UI login",
	"DELETE /web/session":       "UI logout",
	"POST /web/session/refresh": "UI refresh",
}

// matrixUser is one caller of the matrix: a user of role at its home
// facility (village doctor: V420626-001; doctor: T420626-01; the others:
// K420626-01), with a token.
type matrixUser struct {
	Role     auth.Role
	Username string
	Facility string
	Tok      token
}

// matrixReq is one request of the matrix.
type matrixReq struct {
	Path        string
	Body        any
	ContentType string // default application/json
	// Check, optional, inspects an allowed caller's answer further.
	Check func(t *testing.T, status int, body map[string]any)
}

// routeRule is how a route answers each role.
type routeRule struct {
	// Public routes need no token (they are in publicRoutes too).
	Public bool
	// Roles may use the route; every other role must get 403 (audited).
	// Empty: every role.
	Roles []auth.Role
	// Req builds the caller's request at a record of the caller's own
	// facility (own) or of another one (!own: another facility; for an
	// admin, another region). nil: the path with :params as "x", no body.
	Req func(t *testing.T, ts *testServer, caller matrixUser, own bool) matrixReq
	// OK is what an allowed role gets at its own facility (default 200).
	OK int
	// Other is what an allowed role gets at another facility's record:
	// 403, or 404 where existence would leak. 0: the route has no
	// facility dimension (only own is tried).
	Other int
	// Gap names a known authorisation gap: a mismatch in the Other case is
	// logged instead of failing. Use only with the lead's agreement, and
	// say who fixes it.
	Gap string
}

var everyRole []auth.Role // nil: Roles empty means every role

// routeAccess is the per-route table, filled by addRouteAccess.
var routeAccess = map[string]routeRule{}

// addRouteAccess adds rules to routeAccess (call it from an init func in
// your package's test file); a route listed twice panics.
func addRouteAccess(rules map[string]routeRule) {
	for k, r := range rules {
		if _, dup := routeAccess[k]; dup {
			panic("routeAccess: " + k + " listed twice")
		}
		routeAccess[k] = r
	}
}

// addPublicRoutes adds routes that need no token, with why.
func addPublicRoutes(routes map[string]string) {
	for k, why := range routes {
		if _, dup := publicRoutes[k]; dup {
			panic("publicRoutes: " + k + " listed twice")
		}
		publicRoutes[k] = why
	}
}

func init() { addRouteAccess(authRouteAccess) }

// authRouteAccess: the facility, auth, users and audit routes.
var authRouteAccess = map[string]routeRule{
	// Facility registry: readable by every signed-in user (referral
	// targets, consult addressees); no facility scope on reading.
	"GET /api/v1/facilities":               {Roles: everyRole},
	"GET /api/v1/facilities/stats":         {Roles: everyRole},
	"GET /api/v1/facilities/:code":         {Roles: everyRole, Req: reqPath("/api/v1/facilities/" + facVillage2)},
	"GET /api/v1/facilities/:code/subtree": {Roles: everyRole, Req: reqPath("/api/v1/facilities/" + facTownship2 + "/subtree")},
	"GET /api/v1/facilities/:code/chain":   {Roles: everyRole, Req: reqPath("/api/v1/facilities/" + facOtherVillage + "/chain")},
	"POST /api/v1/facilities/import": {Roles: []auth.Role{auth.RoleAdmin}, Other: http.StatusForbidden,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			row := "V420626-002,城关镇第02村卫生室,village,T420626-01,420626"
			if !own {
				row = "V420625-001,测试镇第01村卫生室,village,T420625-01,420625"
			}
			return matrixReq{Path: "/api/v1/facilities/import", ContentType: "text/csv",
				Body: "code,name,tier,parent_code,region_code\n" + row + "\n"}
		}},

	// Auth.
	"POST /api/v1/auth/login":   {Public: true},
	"POST /api/v1/auth/refresh": {Public: true},
	"POST /api/v1/auth/logout": {Roles: everyRole, OK: http.StatusNoContent,
		Req: reqBody("/api/v1/auth/logout", map[string]string{"refresh_token": "not-a-session"})},
	"GET /api/v1/auth/me": {Roles: everyRole, Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
		return matrixReq{Path: "/api/v1/auth/me", Check: func(t *testing.T, _ int, b map[string]any) {
			if b["username"] != u.Username || b["role"] != string(u.Role) || b["facility"] != u.Facility {
				t.Errorf("me = %v, want %s %s %s", b, u.Username, u.Role, u.Facility)
			}
		}}
	}},

	// User management: admins, their region only.
	"GET /api/v1/users": {Roles: []auth.Role{auth.RoleAdmin}, Other: http.StatusOK,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			mine, _ := ts.user(t, auth.RoleDoctor, facTownship2)
			theirs, _ := ts.user(t, auth.RoleDoctor, facOtherTown)
			p := "/api/v1/users"
			if !own {
				p += "?facility=" + facOtherTown // another region's facility: nothing
			}
			return matrixReq{Path: p, Check: func(t *testing.T, _ int, b map[string]any) {
				names := usernames(b)
				if slices.Contains(names, theirs) {
					t.Errorf("admin of %s sees %s of another region", testRegion, theirs)
				}
				if own && !slices.Contains(names, mine) {
					t.Errorf("admin does not see %s of its region", mine)
				}
				if !own && len(names) > 0 {
					t.Errorf("admin sees users of another region: %v", names)
				}
			}}
		}},
	"POST /api/v1/users": {Roles: []auth.Role{auth.RoleAdmin}, OK: http.StatusCreated, Other: http.StatusForbidden,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			f := facVillage2
			if !own {
				f = facOtherVillage
			}
			return matrixReq{Path: "/api/v1/users", Body: map[string]string{
				"username": fmt.Sprintf("new%d.vd", ts.seq.Add(1)), "password": "a-long-password-1", "role": "village_doctor", "facility": f}}
		}},
	"POST /api/v1/users/:username/disable": {Roles: []auth.Role{auth.RoleAdmin}, Other: http.StatusNotFound,
		Req: func(t *testing.T, ts *testServer, u matrixUser, own bool) matrixReq {
			f := facCounty2
			if !own {
				f = facOtherCounty
			}
			target, _ := ts.user(t, auth.RoleDoctor, f)
			return matrixReq{Path: "/api/v1/users/" + target + "/disable"}
		}},

	// The audit log: auditors only, the whole log.
	"GET /api/v1/audit": {Roles: []auth.Role{auth.RoleAuditor}, Req: reqPath("/api/v1/audit?limit=5")},
}

func reqPath(p string) func(*testing.T, *testServer, matrixUser, bool) matrixReq {
	return func(*testing.T, *testServer, matrixUser, bool) matrixReq { return matrixReq{Path: p} }
}

func reqBody(p string, b any) func(*testing.T, *testServer, matrixUser, bool) matrixReq {
	return func(*testing.T, *testServer, matrixUser, bool) matrixReq { return matrixReq{Path: p, Body: b} }
}

func usernames(b map[string]any) []string {
	var out []string
	users, _ := b["users"].([]any)
	for _, u := range users {
		m, _ := u.(map[string]any)
		n, _ := m["username"].(string)
		out = append(out, n)
	}
	return out
}

// samplePath fills an echo route path's parameters with "x".
func samplePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") || s == "*" {
			parts[i] = "x"
		}
	}
	return strings.Join(parts, "/")
}

// servedRoutes is every route of the App as "METHOD /path" (echo's
// not-found catch-alls excluded).
func servedRoutes(a *App) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range a.Echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		k := r.Method + " " + r.Path
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// homeFacility is where the matrix's user of each role works.
func homeFacility(r auth.Role) string {
	switch r {
	case auth.RoleVillageDoctor:
		return facVillage
	case auth.RoleDoctor:
		return facTownship
	}
	return facCounty
}

func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	routes := servedRoutes(ts.App)

	var missing []string
	for _, k := range routes {
		_, path, _ := strings.Cut(k, " ")
		if _, ok := routeAccess[k]; !ok && strings.HasPrefix(path, "/api/v1/") {
			missing = append(missing, k)
		}
		if rule, ok := routeAccess[k]; ok && rule.Public != (publicRoutes[k] != "") {
			t.Errorf("%s: Public in routeAccess and publicRoutes disagree", k)
		}
	}
	if len(missing) > 0 {
		// Still run the rest: the no-token check covers them too.
		t.Errorf("routes missing from routeAccess: add a rule for each with addRouteAccess (see auth_matrix_test.go):\n  %s", strings.Join(missing, "\n  "))
	}
	for k := range routeAccess {
		if !slices.Contains(routes, k) {
			t.Errorf("routeAccess lists %s, which is not served", k)
		}
	}

	t.Run("no token", func(t *testing.T) {
		for _, k := range routes {
			method, p, _ := strings.Cut(k, " ")
			if publicRoutes[k] != "" {
				resp, _ := ts.raw(t, method, samplePath(p), token{}, "", nil)
				if resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized {
					t.Errorf("public %s without a token: %d", k, resp.StatusCode)
				}
				continue
			}
			for _, tok := range []token{{}, bearer("garbage"), bearer("a.b.c")} {
				resp, b := ts.raw(t, method, samplePath(p), tok, "application/json", nil)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s with token %q: status %d, want 401: %s", k, tok.Access, resp.StatusCode, b)
				}
				if strings.HasPrefix(p, "/api/v1/") && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: 401 without a Bearer challenge", k)
				}
			}
		}
	})

	callers := map[auth.Role]matrixUser{}
	for _, r := range auth.Roles {
		name, _ := ts.user(t, r, homeFacility(r))
		callers[r] = matrixUser{Role: r, Username: name, Facility: homeFacility(r), Tok: ts.mint(t, name)}
	}

	for _, k := range routes {
		rule, ok := routeAccess[k]
		if !ok || rule.Public {
			continue
		}
		method, p, _ := strings.Cut(k, " ")
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			for _, r := range auth.Roles {
				caller := callers[r]
				allowed := len(rule.Roles) == 0 || slices.Contains(rule.Roles, r)
				sides := []bool{true}
				if rule.Other != 0 && allowed {
					sides = append(sides, false)
				}
				for _, own := range sides {
					req := matrixReq{Path: samplePath(p)}
					if rule.Req != nil {
						req = rule.Req(t, ts, caller, own)
					}
					want := http.StatusForbidden
					switch {
					case allowed && own:
						want = orDefault(rule.OK, http.StatusOK)
					case allowed:
						want = rule.Other
					}
					ct := orDefault(req.ContentType, "application/json")
					resp, raw := ts.raw(t, method, req.Path, caller.Tok, ct, req.Body)
					side := map[bool]string{true: "own", false: "other"}[own]
					if resp.StatusCode != want {
						msg := fmt.Sprintf("%s as %s (%s facility): status %d, want %d: %s", k, r, side, resp.StatusCode, want, raw)
						if rule.Gap != "" && !own {
							t.Logf("KNOWN GAP (%s): %s", rule.Gap, msg)
							continue
						}
						t.Error(msg)
						continue
					}
					if want == http.StatusForbidden || want == http.StatusNotFound {
						assertDenialAudited(t, ts, resp.Header.Get(echo.HeaderXRequestID), caller.Username)
					}
					if req.Check != nil && allowed {
						_, b := decodeBody(raw)
						req.Check(t, resp.StatusCode, b)
					}
				}
			}
		})
	}
}

// assertDenialAudited checks that the request's denial is in the audit log.
func assertDenialAudited(t *testing.T, ts *testServer, requestID, username string) {
	t.Helper()
	if requestID == "" {
		t.Error("denied response without X-Request-Id")
		return
	}
	var n int
	if err := ts.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'deny' AND request_id = $1 AND username = $2`,
		requestID, username).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("denial of request %s by %s: %d audit entries, want 1", requestID, username, n)
	}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
