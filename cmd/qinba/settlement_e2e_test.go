package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/settlement"
)

// stlDo sends a JSON request with extra headers and returns the status,
// the decoded body, the headers and the raw body.
func stlDo(t *testing.T, ts *testServer, method, path string, tok token, body any, headers map[string]string) (int, map[string]any, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, ts.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_, m := decodeBody(raw)
	return resp.StatusCode, m, resp.Header, raw
}

// split is the amounts of a result (the conformance output's fields).
type stlSplit map[string]string

var stlAmountFields = []string{"total", "eligible", "deductible", "basic", "critical", "assistance", "supplementary", "backstop", "hospital", "patient"}

func splitOf(m map[string]any) stlSplit {
	out := stlSplit{}
	for _, f := range stlAmountFields {
		out[f], _ = m[f].(string)
	}
	return out
}

func (s stlSplit) String() string {
	var b strings.Builder
	for _, f := range stlAmountFields {
		fmt.Fprintf(&b, "%s=%s ", f, s[f])
	}
	return b.String()
}

// resultSplit is the split of a settlement answer's engine result.
func resultSplit(t *testing.T, b map[string]any) stlSplit {
	t.Helper()
	r, ok := b["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result in %v", b)
	}
	return splitOf(r)
}

// The whole loop through the HTTP API of the real App: a poor patient is
// referred from the village to the township and stays there; the township
// refers them up to the county; the county stay is estimated, settled,
// reversed, corrected and settled again; both facilities run November's
// clearing; the household's statement shows it all. Every split equals
// what `qinba settle-cases` computes for the same history, the clearing
// equals the settlements posted in the month, and Verify passes.
func TestSettlementEndToEnd(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	vdoc := ts.as(t, auth.RoleVillageDoctor, facVillage)
	tdoc := ts.as(t, auth.RoleDoctor, facTownship)
	kdoc := ts.as(t, auth.RoleDoctor, facCounty)
	tclerk := ts.as(t, auth.RoleBillingClerk, facTownship)
	kclerk := ts.as(t, auth.RoleBillingClerk, facCounty)
	admin := ts.as(t, auth.RoleAdmin, facCounty)
	hh, ids := stlHousehold(t, ts, facVillage, "registered_poor", "head", "spouse")
	pid := ids[0]

	refer := func(from token, to string) int64 {
		t.Helper()
		st, b := ts.do(t, "POST", "/api/v1/referrals", from, map[string]any{"person_id": pid, "to_facility": to, "urgency": "urgent",
			"diagnoses": []string{"K80.1"}, "summary": "右上腹痛反复发作"})
		if st != http.StatusCreated || b["direction"] != "up" {
			t.Fatalf("refer to %s: %d %v", to, st, b)
		}
		return int64(b["id"].(float64))
	}
	accept := func(doc token, id int64) {
		t.Helper()
		if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/referrals/%d/accept", id), doc, map[string]any{"version": 1}); st != http.StatusOK {
			t.Fatalf("accept %d: %d %v", id, st, b)
		}
	}
	settle := func(tok token, bill int64, key string) map[string]any {
		t.Helper()
		st, b, h, _ := stlDo(t, ts, "POST", fmt.Sprintf("/api/v1/bills/%d/settle", bill), tok, nil, map[string]string{"Idempotency-Key": key})
		if st != http.StatusCreated || h.Get("Idempotent-Replayed") != "" {
			t.Fatalf("settle %d: %d %v", bill, st, b)
		}
		return b
	}
	townLines := []settlement.LineInput{stlLine("A", "2600"), stlLine("B", "900.40"), stlLine("C", "310")}
	countyLines := []settlement.LineInput{
		{ItemCode: "SS501", Name: "腹腔镜胆囊切除术", Class: "A", Quantity: "1", UnitPrice: "2400", Amount: "2400.00"},
		{ItemCode: "CW001", Name: "床位费", Class: "A", Quantity: "11", UnitPrice: "30"},
		{ItemCode: "YP303", Name: "注射用头孢曲松钠 1g", Class: "B", Quantity: "22", UnitPrice: "12.8", Amount: "281.60"},
		{ItemCode: "CL601", Name: "一次性吻合器", Class: "B", Quantity: "1", UnitPrice: "1850"},
		{ItemCode: "CL902", Name: "进口冠脉支架", Class: "C", Quantity: "1", UnitPrice: "6800"},
	}

	// 1. Village → township, the township stay.
	r1 := refer(vdoc, facTownship)
	accept(tdoc, r1)
	in1 := stlInpatient(pid, "", "2019-11-01", "2019-11-08", townLines...)
	in1.ReferralID, in1.ExternalNo = r1, "ZY-T-001"
	st, b := ts.do(t, "POST", "/api/v1/bills", tclerk, in1)
	if st != http.StatusCreated || b["facility"] != facTownship || b["tier"] != "township" || b["status"] != "open" {
		t.Fatalf("township bill: %d %v", st, b)
	}
	bill1 := int64(b["id"].(float64))
	// Without an Idempotency-Key: 428.
	if st, b, _, _ := stlDo(t, ts, "POST", fmt.Sprintf("/api/v1/bills/%d/settle", bill1), tclerk, nil, nil); st != http.StatusPreconditionRequired {
		t.Fatalf("settle without key: %d %v", st, b)
	}
	s1 := settle(tclerk, bill1, "e2e-s1")

	// 2. Township → county; the county stay, estimated, then settled.
	r2 := refer(tdoc, facCounty)
	accept(kdoc, r2)
	in2 := stlInpatient(pid, "", "2019-11-09", "2019-11-20", countyLines...)
	in2.ReferralID, in2.ExternalNo = r2, "ZY-K-001"
	// The referral of the township stay is not a referral to the county.
	bad := in2
	bad.ReferralID = r1
	if st, b := ts.do(t, "POST", "/api/v1/bills", kclerk, bad); st != http.StatusBadRequest || !strings.Contains(fmt.Sprint(b), "referral_id") {
		t.Fatalf("wrong referral: %d %v", st, b)
	}
	st, b = ts.do(t, "POST", "/api/v1/bills/estimate", kdoc, in2)
	if st != http.StatusOK || b["estimate"] != true {
		t.Fatalf("estimate: %d %v", st, b)
	}
	estimate := resultSplit(t, b)
	st, b = ts.do(t, "POST", "/api/v1/bills", kclerk, in2)
	if st != http.StatusCreated {
		t.Fatalf("county bill: %d %v", st, b)
	}
	bill2 := int64(b["id"].(float64))
	if n := stlCount(t, ts, `SELECT count(*) FROM settlement WHERE bill_id = $1`, bill2); n != 0 {
		t.Fatalf("the estimate wrote %d settlements", n)
	}
	s2 := settle(kclerk, bill2, "e2e-s2")
	if got := resultSplit(t, s2); got.String() != estimate.String() {
		t.Fatalf("settled %v, estimated %v", got, estimate)
	}
	input := s2["input"].(map[string]any)["bill"].(map[string]any)
	prior := input["referral"].(map[string]any)["prior_deductible_paid"]
	if prior != resultSplit(t, s1)["deductible"] {
		t.Fatalf("prior deductible %v, the township stay's deductible is %v", prior, resultSplit(t, s1)["deductible"])
	}
	// The same request again: the first answer, byte for byte.
	st, _, h, raw := stlDo(t, ts, "POST", fmt.Sprintf("/api/v1/bills/%d/settle", bill2), kclerk, nil, map[string]string{"Idempotency-Key": "e2e-s2"})
	first, _ := json.Marshal(s2)
	var again map[string]any
	_ = json.Unmarshal(raw, &again)
	replayed, _ := json.Marshal(again)
	if st != http.StatusCreated || h.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first, replayed) {
		t.Fatalf("retry: %d %q", st, h.Get("Idempotent-Replayed"))
	}

	// 3. Reverse, correct (the stent was billed by mistake), settle again.
	sid2 := int64(s2["id"].(float64))
	st, rev, _, _ := stlDo(t, ts, "POST", fmt.Sprintf("/api/v1/settlements/%d/reverse", sid2), kclerk,
		map[string]string{"reason": "支架误录", "date": "2019-11-25"}, map[string]string{"Idempotency-Key": "e2e-r2"})
	if st != http.StatusCreated || rev["kind"] != "reverse" {
		t.Fatalf("reverse: %d %v", st, rev)
	}
	st, b, _, _ = stlDo(t, ts, "POST", fmt.Sprintf("/api/v1/settlements/%d/reverse", sid2), kclerk,
		map[string]string{"reason": "again"}, map[string]string{"Idempotency-Key": "e2e-r3"})
	if st != http.StatusConflict {
		t.Fatalf("reverse twice: %d %v", st, b)
	}
	in2c := in2
	in2c.Lines = countyLines[:4]
	st, b = ts.do(t, "POST", "/api/v1/bills", kclerk, in2c)
	if st != http.StatusOK || int64(b["id"].(float64)) != bill2 || b["version"] != float64(2) || b["status"] != "reversed" {
		t.Fatalf("correct the bill: %d %v", st, b)
	}
	s3 := settle(kclerk, bill2, "e2e-s3")

	// 4. What settle-cases gives for the same history. The county stay's
	// referral input is the township stay's deductible.
	caseBill := func(id, date, tier string, lines []settlement.LineInput, prior string) map[string]any {
		var ls []map[string]string
		for _, l := range lines {
			amt := l.Amount
			if amt == "" {
				amt = stlAmount(t, l.Quantity, l.UnitPrice)
			}
			ls = append(ls, map[string]string{"class": l.Class, "amount": amt})
		}
		return map[string]any{"id": id, "date": date, "kind": "inpatient", "tier": tier,
			"referral": map[string]any{"direction": "up", "prior_deductible_paid": prior}, "lines": ls}
	}
	townCase := caseBill("b1", "2019-11-08", "township", townLines, "0")
	out := stlRunCases(t, nil, []any{townCase})
	d1 := out[0]["deductible"]
	out = stlRunCases(t, qinbaBinary(t), []any{townCase,
		caseBill("b2", "2019-11-20", "county", countyLines, d1),
		map[string]any{"reverse": "b2"},
		caseBill("b3", "2019-11-20", "county", countyLines[:4], d1)})
	for i, got := range []stlSplit{resultSplit(t, s1), resultSplit(t, s2), resultSplit(t, rev), resultSplit(t, s3)} {
		want := stlSplit{}
		for _, f := range stlAmountFields {
			want[f] = out[i][f]
		}
		if got.String() != want.String() {
			t.Errorf("step %d: the API gives %v, settle-cases %v", i+1, got, want)
		}
	}

	// 5. November's clearing, by each facility's clerk; twice is 409.
	var runID int64
	clear := func(tok token, fac string) map[string]any {
		t.Helper()
		st, b := ts.do(t, "POST", "/api/v1/clearing", tok, map[string]string{"period": "2019-11"})
		if st != http.StatusCreated {
			t.Fatalf("clearing %s: %d %v", fac, st, b)
		}
		fs := b["facilities"].([]any)
		if len(fs) != 1 || fs[0].(map[string]any)["facility"] != fac {
			t.Fatalf("clearing %s covers %v", fac, fs)
		}
		runID = int64(b["id"].(float64))
		return fs[0].(map[string]any)
	}
	kc := clear(kclerk, facCounty)
	resp, csvOut := ts.raw(t, "GET", fmt.Sprintf("/api/v1/clearing/%d?format=csv", runID), admin, "", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(csvOut), strings.Join(settlement.ClearingCSVHeader, ",")) ||
		strings.Count(string(csvOut), "\n") != 1+len(settlement.Funds) {
		t.Fatalf("clearing CSV: %d %s", resp.StatusCode, csvOut)
	}
	if st, b := ts.do(t, "POST", "/api/v1/clearing", kclerk, map[string]string{"period": "2019-11"}); st != http.StatusConflict {
		t.Fatalf("clearing twice: %d %v", st, b)
	}
	tc := clear(tclerk, facTownship)
	if kc["settlements"] != float64(2) || kc["reversals"] != float64(1) || tc["settlements"] != float64(1) || tc["reversals"] != float64(0) {
		t.Fatalf("counts: county %v, township %v", kc, tc)
	}
	owed := func(c map[string]any) map[string]string {
		m := map[string]string{}
		for _, f := range c["funds"].([]any) {
			fm := f.(map[string]any)
			m[fm["fund"].(string)] = fm["amount"].(string)
		}
		return m
	}
	// County: settled, reversed, settled again: what the last settlement
	// says; township: its one stay.
	for _, fund := range settlement.Funds {
		if got, want := owed(kc)[fund], resultSplit(t, s3)[fund]; got != want {
			t.Errorf("county owes %s %s, want %s", fund, got, want)
		}
		if got, want := owed(tc)[fund], resultSplit(t, s1)[fund]; got != want {
			t.Errorf("township owes %s %s, want %s", fund, got, want)
		}
	}
	// A settlement dated in the cleared month is posted in December.
	late := stlInpatient(ids[1], "", "2019-11-26", "2019-11-28", stlLine("A", "1200"))
	st, b = ts.do(t, "POST", "/api/v1/bills", kclerk, late)
	if st != http.StatusCreated {
		t.Fatalf("late bill: %d %v", st, b)
	}
	sl := settle(kclerk, int64(b["id"].(float64)), "e2e-late")
	if sl["posted_on"] != "2019-12-01" || sl["bill_date"] != "2019-11-28" {
		t.Fatalf("late settlement posted on %v", sl["posted_on"])
	}

	// 6. The household's statement, JSON and printable HTML.
	st, stmt := ts.do(t, "GET", "/api/v1/households/"+hh+"/statement?year=2019", admin, nil)
	if st != http.StatusOK {
		t.Fatalf("statement: %d %v", st, stmt)
	}
	bills := stmt["bills"].([]any)
	totals := stmt["totals"].(map[string]any)
	if len(bills) != 3 || totals["settled"] != float64(3) {
		t.Fatalf("statement bills %d, totals %v", len(bills), totals)
	}
	wantPatient := stlSum(t, resultSplit(t, s1)["patient"], resultSplit(t, s3)["patient"], resultSplit(t, sl)["patient"])
	if totals["patient"] != wantPatient {
		t.Fatalf("statement patient total %v, want %s", totals["patient"], wantPatient)
	}
	html := []byte(nil)
	resp, html = ts.raw(t, "GET", "/api/v1/households/"+hh+"/statement?year=2019&format=html", kclerk, "", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(html), "年度医疗费用") || !strings.Contains(string(html), wantPatient) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "style-src 'sha256-") {
		t.Fatalf("statement HTML: %d %s", resp.StatusCode, html)
	}

	// 7. The books verify, and every read and write was audited.
	if err := settlement.Verify(ctx, ts.Pool); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"create", "update", "settle", "reverse", "estimate", "clearing"} {
		if stlCount(t, ts, `SELECT count(*) FROM audit_log WHERE action = $1 AND (record_type = 'bill' OR record_type = 'settlement' OR record_type = 'clearing_run')`, action) == 0 {
			t.Errorf("no %s in the audit log", action)
		}
	}
	if n := stlCount(t, ts, `SELECT count(*) FROM audit_log WHERE action = 'read' AND record_type = 'household_statement' AND record_id = $1`, hh); n != 2 {
		t.Errorf("statement reads audited %d times", n)
	}
}

func stlCount(t *testing.T, ts *testServer, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := ts.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// stlAmount is round2(quantity × price).
func stlAmount(t *testing.T, q, p string) string {
	t.Helper()
	return decimal.RequireFromString(q).Mul(decimal.RequireFromString(p)).Round(2).StringFixed(2)
}

// stlSum adds amounts.
func stlSum(t *testing.T, amounts ...string) string {
	t.Helper()
	var sum decimal.Decimal
	for _, a := range amounts {
		sum = sum.Add(decimal.RequireFromString(a))
	}
	return sum.StringFixed(2)
}

// stlRunCases runs the conformance runner on one case of person
// registered_poor, insured, with the given bills: through the binary's
// `settle-cases` when bin is set, else in process. It returns the results.
func stlRunCases(t *testing.T, bin any, bills []any) []stlSplit {
	t.Helper()
	doc, _ := json.Marshal(map[string]any{"cases": []any{map[string]any{"id": "e2e",
		"person": map[string]any{"category": "registered_poor", "insured": true}, "bills": bills}}})
	var out []byte
	if path, ok := bin.(string); ok {
		cmd := exec.Command(path, "settle-cases")
		cmd.Stdin = bytes.NewReader(doc)
		var err error
		if out, err = cmd.Output(); err != nil {
			t.Fatalf("settle-cases: %v", err)
		}
	} else {
		var buf bytes.Buffer
		if err := settlement.RunCases(settlement.ReferencePolicy(), bytes.NewReader(doc), &buf); err != nil {
			t.Fatal(err)
		}
		out = buf.Bytes()
	}
	var res struct {
		Cases []struct {
			Error   string           `json:"error"`
			Results []map[string]any `json:"results"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Cases) != 1 || res.Cases[0].Error != "" {
		t.Fatalf("settle-cases: %v %s", err, out)
	}
	var out2 []stlSplit
	for _, r := range res.Cases[0].Results {
		out2 = append(out2, splitOf(r))
	}
	return out2
}
