package main

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/household"
)

// Identity numbers of the end-to-end fixture (valid GB 11643 numbers).
var (
	e2eHead   = withCheckChar("42062619700101001")
	e2eSpouse = withCheckChar("42062619720202002")
	e2eOther  = withCheckChar("42062519800303003")
)

func withCheckChar(s17 string) string { return s17 + string(household.CheckChar(s17)) }

// e2eRoster: household E1 in the matrix's home village V420626-001, E2 in
// the other region's village V420625-001.
var e2eRoster = "household_id,national_id,name,relation,village_code,category,insured\n" +
	"E1," + e2eHead + ",张三,head," + facVillage + ",registered_poor,true\n" +
	"E1," + e2eSpouse + ",李四,spouse," + facVillage + ",registered_poor,false\n" +
	"E2," + e2eOther + ",王五,head," + facOtherVillage + ",dibao,true\n"

// personID returns the id of the person with the identity number.
func (s *testServer) personID(t *testing.T, nationalID string) int64 {
	t.Helper()
	p, err := household.NewStore().GetPersonByNationalID(context.Background(), s.Pool, nationalID)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

// TestHouseholdEndToEnd drives the real server: a billing clerk uploads the
// roster, a village doctor finds a patient (masked), the clerk reads the
// full number (audited), and a doctor of another village is told nothing.
func TestHouseholdEndToEnd(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	clerk := ts.as(t, auth.RoleBillingClerk, facCounty)
	vdoc := ts.as(t, auth.RoleVillageDoctor, facVillage)
	vdoc2 := ts.as(t, auth.RoleVillageDoctor, facVillage2)

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "roster.csv")
	fw.Write([]byte(e2eRoster))
	mw.Close()
	resp, raw := ts.raw(t, "POST", "/api/v1/households/import?year=2024", clerk, mw.FormDataContentType(), buf.Bytes())
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"persons":{"added":3`) {
		t.Fatalf("import: %d %s", resp.StatusCode, raw)
	}
	if strings.Contains(string(raw), e2eHead) {
		t.Error("the import report shows an identity number")
	}
	// A bad upload: 400 with the lines.
	resp, raw = ts.raw(t, "POST", "/api/v1/households/import", clerk, "text/csv", strings.Replace(e2eRoster, ",true\n", ",yes\n", 1))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), `"line":2,"column":"insured"`) {
		t.Errorf("bad import: %d %s", resp.StatusCode, raw)
	}

	st, body := ts.do(t, "GET", "/api/v1/persons?q=张", vdoc, nil)
	persons, _ := body["persons"].([]any)
	if st != http.StatusOK || len(persons) != 1 || persons[0].(map[string]any)["national_id"] != household.MaskID(e2eHead) {
		t.Fatalf("search: %d %v", st, body)
	}
	head := strconv.FormatInt(ts.personID(t, e2eHead), 10)
	if st, body := ts.do(t, "GET", "/api/v1/persons/"+head, vdoc, nil); st != http.StatusOK || body["national_id"] != household.MaskID(e2eHead) {
		t.Errorf("village doctor reads: %d %v", st, body)
	}
	if st, _ := ts.do(t, "GET", "/api/v1/persons/"+head+"?full=1", vdoc, nil); st != http.StatusForbidden {
		t.Errorf("village doctor full=1: %d", st)
	}
	if st, body := ts.do(t, "GET", "/api/v1/persons/"+head+"?full=1", clerk, nil); st != http.StatusOK || body["national_id"] != e2eHead {
		t.Errorf("clerk full=1: %d %v", st, body)
	}
	if st, _ := ts.do(t, "GET", "/api/v1/persons/"+head, vdoc2, nil); st != http.StatusNotFound {
		t.Errorf("another village's doctor: %d", st)
	}
	if st, body := ts.do(t, "GET", "/api/v1/households/E1", vdoc, nil); st != http.StatusOK || len(body["members"].([]any)) != 2 {
		t.Errorf("household: %d %v", st, body)
	}

	// The audit log: the full read, the denial, no full number anywhere.
	var n int
	ctx := context.Background()
	ts.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'read_full_id' AND record_id = $1`, head).Scan(&n)
	if n != 1 {
		t.Errorf("%d read_full_id entries", n)
	}
	ts.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'deny' AND record_type = 'person' AND record_id = $1`, head).Scan(&n)
	if n != 2 { // the village doctor's full=1, the other village's read
		t.Errorf("%d person denials, want 2", n)
	}
	ts.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE concat_ws(' ', record_id, detail::text) LIKE '%' || $1 || '%'`, e2eHead).Scan(&n)
	if n != 0 {
		t.Errorf("%d audit entries hold the full number", n)
	}
}
