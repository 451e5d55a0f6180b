package household

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/httpx"
)

// api serves the household routes with a fixed principal per request,
// chosen by the X-Test-User header (a key of users).
type api struct {
	*testBundle
	srv   *httptest.Server
	users map[string]*auth.Principal
	h     *Handler
}

func newAPI(t *testing.T) *api {
	t.Helper()
	b := setup(t)
	a := &api{testBundle: b, users: map[string]*auth.Principal{
		"vdoc":       {UserID: 1, Username: "vdoc", Role: auth.RoleVillageDoctor, Facility: "V420626-001", Tier: "village", Region: "420626"},
		"vdoc2":      {UserID: 2, Username: "vdoc2", Role: auth.RoleVillageDoctor, Facility: "V420626-002", Tier: "village", Region: "420626"},
		"towndoc":    {UserID: 3, Username: "towndoc", Role: auth.RoleDoctor, Facility: "T420626-01", Tier: "township", Region: "420626"},
		"town2doc":   {UserID: 4, Username: "town2doc", Role: auth.RoleDoctor, Facility: "T420626-02", Tier: "township", Region: "420626"},
		"clerk":      {UserID: 5, Username: "clerk", Role: auth.RoleBillingClerk, Facility: "K420626-01", Tier: "county", Region: "420626"},
		"admin":      {UserID: 6, Username: "admin", Role: auth.RoleAdmin, Facility: "K420626-01", Tier: "county", Region: "420626"},
		"otheradmin": {UserID: 7, Username: "otheradmin", Role: auth.RoleAdmin, Facility: "K420625-01", Tier: "county", Region: "420625"},
		"auditor":    {UserID: 8, Username: "auditor", Role: auth.RoleAuditor, Facility: "K420626-01", Tier: "county", Region: "420626"},
	}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := httpx.NewEcho(log, nil, "12M")
	g := e.Group("/api/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p := a.users[c.Request().Header.Get("X-Test-User")]; p != nil {
				ctx := auth.WithPrincipal(c.Request().Context(), p)
				ctx = auth.WithMeta(ctx, auth.RequestMeta{RequestID: c.Response().Header().Get(echo.HeaderXRequestID)})
				c.SetRequest(c.Request().WithContext(ctx))
			}
			return next(c)
		}
	})
	a.h = NewHandler(b.pool, log)
	a.h.Routes(g)
	a.srv = httptest.NewServer(e)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *api) call(t *testing.T, user, method, path, contentType string, body io.Reader) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-User", user)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func (a *api) get(t *testing.T, user, path string) (int, map[string]any) {
	t.Helper()
	st, body, _ := a.call(t, user, "GET", path, "", nil)
	return st, body
}

// The fixture: H1 (head, spouse) in V420626-001 under T420626-01; H2 in
// V420626-002 (same township); H3 in V420625-001, another region.
func (a *api) load(t *testing.T) map[string]int64 {
	t.Helper()
	a.mustImport(t, baseRoster+
		"H3,"+idChild2+",赵六,head,V420625-001,tekun,true\n", Options{})
	ids := map[string]int64{}
	for _, nid := range []string{idHead, idSpouse, idHead2, idChild2} {
		p, err := NewStore().GetPersonByNationalID(a.ctx, a.pool, nid)
		if err != nil {
			t.Fatal(err)
		}
		ids[nid] = p.ID
	}
	return ids
}

func personIDs(body map[string]any) []int64 {
	var out []int64
	ps, _ := body["persons"].([]any)
	for _, p := range ps {
		m := p.(map[string]any)
		out = append(out, int64(m["id"].(float64)))
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...int64) []int64 { slices.Sort(ids); return ids }

func TestGetPersonScope(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ids := a.load(t)
	head := strconv.FormatInt(ids[idHead], 10)
	for _, tc := range []struct {
		user string
		want int
	}{
		{"vdoc", 200},       // the person's village
		{"towndoc", 200},    // the township above it
		{"clerk", 200},      // the county hospital above that
		{"admin", 200},      // an admin of the region
		{"vdoc2", 404},      // another village
		{"town2doc", 404},   // another township
		{"otheradmin", 404}, // an admin of another region
		{"auditor", 403},    // auditors read the log, not records
		{"nobody", 401},     // no principal
	} {
		st, body := a.get(t, tc.user, "/api/v1/persons/"+head)
		if st != tc.want {
			t.Errorf("%s: status %d, want %d: %v", tc.user, st, tc.want, body)
			continue
		}
		if st == 200 {
			if body["national_id"] != MaskID(idHead) || body["national_id_full"] != nil || body["name"] != "张三" ||
				body["sex"] != "M" || body["birth_date"] != "1970-01-01" || body["household_id"] != "H1" ||
				body["relation"] != "head" || body["village_code"] != "V420626-001" || body["category"] != "registered_poor" {
				t.Errorf("%s: body %v", tc.user, body)
			}
			ins, _ := body["insurance"].([]any)
			if len(ins) != 1 || ins[0].(map[string]any)["year"] != 2024.0 || ins[0].(map[string]any)["insured"] != true {
				t.Errorf("insurance %v", body["insurance"])
			}
		}
	}
	// A denial is audited; a missing person looks the same as a hidden one.
	if n := a.count(t, `SELECT count(*) FROM audit_log WHERE action = 'deny' AND record_type = 'person' AND username = 'vdoc2'`); n != 1 {
		t.Errorf("denials audited for vdoc2: %d", n)
	}
	for _, p := range []string{"/api/v1/persons/999999", "/api/v1/persons/abc", "/api/v1/persons/-1"} {
		if st, body := a.get(t, "admin", p); st != 404 || strings.Contains(body["error"].(map[string]any)["message"].(string), "999999") {
			t.Errorf("%s: %d %v", p, st, body)
		}
	}
}

func TestGetPersonFullID(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ids := a.load(t)
	path := "/api/v1/persons/" + strconv.FormatInt(ids[idHead], 10) + "?full=1"
	for _, user := range []string{"clerk", "admin"} {
		st, body := a.get(t, user, path)
		if st != 200 || body["national_id"] != idHead || body["national_id_full"] != true {
			t.Errorf("%s full=1: %d %v", user, st, body)
		}
		if n := a.count(t, `SELECT count(*) FROM audit_log WHERE action = 'read_full_id' AND record_type = 'person' AND record_id = $1 AND username = $2`,
			strconv.FormatInt(ids[idHead], 10), user); n != 1 {
			t.Errorf("%s: %d read_full_id entries", user, n)
		}
	}
	for _, user := range []string{"vdoc", "towndoc"} {
		if st, body := a.get(t, user, path); st != 403 {
			t.Errorf("%s full=1: %d %v", user, st, body)
		}
	}
	// Out of scope stays 404 even for a role that may see full numbers.
	if st, _ := a.get(t, "otheradmin", path); st != 404 {
		t.Errorf("otheradmin full=1: %d", st)
	}
	if st, _ := a.get(t, "clerk", "/api/v1/persons/"+strconv.FormatInt(ids[idHead], 10)+"?full=yes"); st != 400 {
		t.Errorf("full=yes: %d", st)
	}
	// Nothing in the audit log holds a full number.
	var leaks int
	if err := a.pool.QueryRow(a.ctx, `SELECT count(*) FROM audit_log WHERE detail::text LIKE '%' || $1 || '%' OR record_id = $1`, idHead).Scan(&leaks); err != nil || leaks != 0 {
		t.Errorf("audit entries with the full number: %d (%v)", leaks, err)
	}
}

func TestSearchPersons(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ids := a.load(t)
	for _, tc := range []struct {
		user, query string
		want        []int64
	}{
		{"admin", "", sorted(ids[idHead], ids[idSpouse], ids[idHead2])},
		{"admin", "?q=张", sorted(ids[idHead])},
		{"admin", "?q=" + idSpouse, sorted(ids[idSpouse])},
		{"admin", "?q=" + strings.ToLower(idSpouse), sorted(ids[idSpouse])},
		{"admin", "?q=" + idHead2[12:], sorted(ids[idHead2])},
		{"admin", "?q=H1", sorted(ids[idHead], ids[idSpouse])},
		{"admin", "?household=H2", sorted(ids[idHead2])},
		{"admin", "?village=V420626-002", sorted(ids[idHead2])},
		{"admin", "?q=12", nil},  // too short to be a number's tail
		{"admin", "?q=%25", nil}, // LIKE wildcards are literal
		{"vdoc", "", sorted(ids[idHead], ids[idSpouse])},
		{"vdoc2", "", sorted(ids[idHead2])},
		{"towndoc", "", sorted(ids[idHead], ids[idSpouse], ids[idHead2])},
		{"town2doc", "", nil},
		{"otheradmin", "", sorted(ids[idChild2])},
		{"otheradmin", "?q=H1", nil},
		{"vdoc", "?village=V420626-002", nil},
	} {
		st, body := a.get(t, tc.user, "/api/v1/persons"+tc.query)
		if st != 200 {
			t.Errorf("%s %s: %d %v", tc.user, tc.query, st, body)
			continue
		}
		if got := personIDs(body); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.user, tc.query, got, tc.want)
		}
		for _, p := range body["persons"].([]any) {
			if nid := p.(map[string]any)["national_id"].(string); !strings.Contains(nid, "********") {
				t.Errorf("list shows %q unmasked", nid)
			}
		}
	}
	// One audit entry per request, with the ids and the query masked.
	var detail string
	err := a.pool.QueryRow(a.ctx, `SELECT detail::text FROM audit_log WHERE action = 'read' AND record_type = 'person' AND record_id = 'search'
		AND detail->>'q' LIKE '%****%' ORDER BY id LIMIT 1`).Scan(&detail)
	if err != nil || strings.Contains(detail, idSpouse) || !strings.Contains(detail, `"ids"`) {
		t.Errorf("search audit detail %q (%v)", detail, err)
	}
	if n := a.count(t, `SELECT count(*) FROM audit_log WHERE action = 'read' AND record_id = 'search'`); n != 17 {
		t.Errorf("%d search audit entries, want 17", n)
	}
	for _, q := range []string{"?bogus=1", "?limit=0", "?limit=501", "?q=" + strings.Repeat("x", 101)} {
		if st, _ := a.get(t, "admin", "/api/v1/persons"+q); st != 400 {
			t.Errorf("%s: %d", q, st)
		}
	}
	if st, _ := a.get(t, "auditor", "/api/v1/persons"); st != 403 {
		t.Errorf("auditor list: %d", st)
	}
}

func TestGetHousehold(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ids := a.load(t)
	st, body := a.get(t, "vdoc", "/api/v1/households/H1")
	if st != 200 || body["id"] != "H1" || body["village_code"] != "V420626-001" || body["category"] != "registered_poor" {
		t.Fatalf("H1: %d %v", st, body)
	}
	if _, ok := body["totals"]; ok {
		t.Error("totals present without a totals hook")
	}
	ms := body["members"].([]any)
	if len(ms) != 2 || ms[0].(map[string]any)["relation"] != "head" || ms[0].(map[string]any)["national_id"] != MaskID(idHead) {
		t.Errorf("members %v", ms)
	}
	for user, want := range map[string]int{"vdoc2": 404, "otheradmin": 404, "towndoc": 200, "admin": 200, "auditor": 403} {
		if st, _ := a.get(t, user, "/api/v1/households/H1"); st != want {
			t.Errorf("%s: %d, want %d", user, st, want)
		}
	}
	if st, _ := a.get(t, "admin", "/api/v1/households/NOPE"); st != 404 {
		t.Errorf("unknown household: %d", st)
	}
	var detail string
	if err := a.pool.QueryRow(a.ctx, `SELECT detail::text FROM audit_log WHERE action = 'read' AND record_type = 'household' AND record_id = 'H1' AND username = 'vdoc'`).Scan(&detail); err != nil ||
		!strings.Contains(detail, strconv.FormatInt(ids[idSpouse], 10)) {
		t.Errorf("household read audit %q %v", detail, err)
	}
	// The settlement hook fills totals.
	a.h.Totals = func(_ context.Context, _ db.DBTX, id string, year int) (any, error) {
		return map[string]any{"household": id, "year": year}, nil
	}
	_, body = a.get(t, "vdoc", "/api/v1/households/H1?year=2025")
	if tot, _ := body["totals"].(map[string]any); tot["household"] != "H1" || tot["year"] != 2025.0 {
		t.Errorf("totals %v", body["totals"])
	}
}

func multipartBody(t *testing.T, field, name string, data []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile(field, name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func TestImportAPI(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ct, body := multipartBody(t, "file", "roster.csv", []byte(baseRoster))
	st, resp, _ := a.call(t, "clerk", "POST", "/api/v1/households/import?year=2024", ct, body)
	if st != 200 {
		t.Fatalf("import: %d %v", st, resp)
	}
	rep := resp["report"].(map[string]any)
	if rep["written"] != true || rep["households"].(map[string]any)["added"] != 2.0 || rep["persons"].(map[string]any)["added"] != 3.0 {
		t.Errorf("report %v", rep)
	}
	// text/csv works too; a re-import changes nothing.
	st, resp, _ = a.call(t, "admin", "POST", "/api/v1/households/import?year=2024", "text/csv", strings.NewReader(baseRoster))
	if st != 200 || resp["report"].(map[string]any)["persons"].(map[string]any)["unchanged"] != 3.0 {
		t.Errorf("re-import: %d %v", st, resp)
	}
	// A bad file: 400 with every bad line, nothing written.
	before := a.fingerprint(t)
	data, want := badRoster()
	ct, body = multipartBody(t, "file", "bad.csv", []byte(data))
	st, resp, _ = a.call(t, "clerk", "POST", "/api/v1/households/import?year=2024", ct, body)
	if st != 400 {
		t.Fatalf("bad file: %d %v", st, resp)
	}
	e := resp["error"].(map[string]any)
	rows := e["details"].(map[string]any)["rows"].([]any)
	if e["code"] != "invalid" || len(rows) != len(want) {
		t.Errorf("bad file: %v", e)
	}
	r0 := rows[0].(map[string]any)
	if r0["line"] != 4.0 || r0["column"] != "national_id" || r0["reason"] != "the check character must be a digit or X" {
		t.Errorf("first bad row %v", r0)
	}
	if a.fingerprint(t) != before {
		t.Error("a rejected upload wrote rows")
	}
	// skip_invalid=1 writes the good households.
	ct, body = multipartBody(t, "file", "bad.csv", []byte(data))
	st, resp, _ = a.call(t, "clerk", "POST", "/api/v1/households/import?year=2024&skip_invalid=1", ct, body)
	if st != 200 || resp["report"].(map[string]any)["households"].(map[string]any)["added"] != 2.0 ||
		len(resp["report"].(map[string]any)["errors"].([]any)) != len(want) {
		t.Errorf("skip_invalid: %d %v", st, resp)
	}
	// Roles and requests.
	for _, user := range []string{"vdoc", "towndoc", "auditor"} {
		if st, _, _ := a.call(t, user, "POST", "/api/v1/households/import", "text/csv", strings.NewReader(baseRoster)); st != 403 {
			t.Errorf("%s import: %d", user, st)
		}
	}
	for _, tc := range []struct {
		ct, q string
		body  string
		want  int
	}{
		{"application/json", "", "{}", 415},
		{"text/csv", "?year=1999", baseRoster, 400},
		{"text/csv", "?skip_invalid=maybe", baseRoster, 400},
		{"text/csv", "", "nonsense\n", 400},
	} {
		if st, resp, _ := a.call(t, "clerk", "POST", "/api/v1/households/import"+tc.q, tc.ct, strings.NewReader(tc.body)); st != tc.want {
			t.Errorf("%s %s: %d, want %d: %v", tc.ct, tc.q, st, tc.want, resp)
		}
	}
	ct, body = multipartBody(t, "other", "x.csv", []byte(baseRoster))
	if st, _, _ := a.call(t, "clerk", "POST", "/api/v1/households/import", ct, body); st != 400 {
		t.Errorf("multipart without file: %d", st)
	}
}
