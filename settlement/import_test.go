package settlement

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/qinba/qinba/internal/apperr"
)

const csvHeader = "external_no,facility_code,person_id,national_id,kind,admitted_on,discharged_on,visit_on,emergency,referral_id,item_code,item_name,class,quantity,unit_price,amount\n"

// importCSV runs an import and returns the report and the error.
func importCSV(t *testing.T, b *bundle, body string, opts ImportOptions) (*ImportReport, error) {
	t.Helper()
	return b.svc.ImportBills(b.ctx, nil, strings.NewReader(body), opts)
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestImportBills(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p1 := b.person(t, tVillage, CategoryRegisteredPoor, 2019)
	p2 := b.person(t, tVillage, CategoryNone, 2019)
	var nid string
	if err := b.pool.QueryRow(b.ctx, `SELECT national_id FROM person WHERE id = $1`, p2).Scan(&nid); err != nil {
		t.Fatal(err)
	}
	other := b.person(t, tVillage, CategoryDibao, 2019)
	sent := b.referral(t, other, tTownship, tCounty, "up", "sent")
	good := csvHeader +
		fmt.Sprintf("ZY-1,%s,%d,,inpatient,2019-05-01,2019-05-09,,false,,CW001,床位费,A,8,30,240.00\n", tCounty, p1) +
		fmt.Sprintf("ZY-1,%s,%d,,inpatient,2019-05-01,2019-05-09,,false,,YP303,头孢曲松钠,B,12,12.8,\n", tCounty, p1) +
		fmt.Sprintf("ZY-1,%s,%d,,inpatient,2019-05-01,2019-05-09,,false,,CL902,支架,C,1,6800,6800\n", tCounty, p1) +
		fmt.Sprintf("MZ-1,%s,,%s,outpatient,,,2019-05-03,,,XM101,血常规,A,1,20,20.00\n", tTownship, strings.ToLower(nid))

	t.Run("all or nothing", func(t *testing.T) {
		bad := good +
			fmt.Sprintf("ZY-2,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,,X,床位费,D,1,30,\n", tCounty, p1) + // class
			fmt.Sprintf("ZY-3,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,,X,床位费,A,2,30,61.00\n", tCounty, p1) + // amount
			fmt.Sprintf("ZY-4,%s,999999,,inpatient,2019-05-01,2019-05-02,,false,,X,床位费,A,1,30,\n", tCounty) + // person
			fmt.Sprintf("ZY-5,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,,X,床位费,A,1,30,\n", tCounty, p1) +
			fmt.Sprintf("ZY-5,%s,%d,,inpatient,2019-05-01,2019-05-03,,false,,Y,护理费,A,1,25,\n", tCounty, p1) + // differs
			fmt.Sprintf("ZY-6,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,,X,床位费,A,1,30,\n", tVillage, p1) + // tier
			fmt.Sprintf("ZY-7,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,%d,X,床位费,A,1,30,\n", tCounty, p1, sent) + // referral
			fmt.Sprintf(",%s,%d,,outpatient,,,2019-05-02,,,X,挂号,A,1,1,\n", tTownship, p1) + // external_no
			"too,few\n"
		rep, err := importCSV(t, b, bad, ImportOptions{})
		var ie *ImportError
		if !apperr.Is(err, apperr.Invalid) || !errors.As(err, &ie) || rep == nil || rep.Written {
			t.Fatalf("err %v, report %+v", err, rep)
		}
		want := map[int]string{6: "class", 7: "amount", 8: "person_id", 10: "discharged_on", 11: "kind", 12: "referral_id", 13: "external_no", 14: ""}
		got := map[int]string{}
		for _, e := range rep.Errors {
			if _, dup := got[e.Line]; !dup {
				got[e.Line] = e.Column
			}
			if e.Reason == "" {
				t.Errorf("line %d: no reason", e.Line)
			}
		}
		for line, col := range want {
			if c, ok := got[line]; !ok || c != col {
				t.Errorf("line %d: column %q (found %v), want %q; errors %v", line, c, ok, col, rep.Errors)
			}
		}
		if n := b.count(t, `SELECT count(*) FROM bill`); n != 0 {
			t.Fatalf("%d bills written", n)
		}
	})

	t.Run("skip invalid", func(t *testing.T) {
		bad := good + fmt.Sprintf("ZY-9,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,,X,床位费,A,1,30,\n", tCounty, p1) +
			fmt.Sprintf("ZY-9,%s,%d,,inpatient,2019-05-01,2019-05-02,,false,,Y,护理费,A,x,25,\n", tCounty, p1)
		rep, err := importCSV(t, b, bad, ImportOptions{SkipInvalid: true})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Written || rep.Bills.Added != 2 || rep.Bills.Rejected != 1 || rep.Lines != 4 || rep.Rejected() != 2 {
			t.Fatalf("report %+v", rep)
		}
		var buf bytes.Buffer
		if err := rep.WriteRejects(&buf); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(recs) != 3 || recs[0][16] != "line" || recs[1][16] != "6" || recs[2][16] != "7" || recs[2][17] != "quantity" ||
			!strings.Contains(recs[1][18], "rejected whole") {
			t.Fatalf("rejects %v %v", recs, err)
		}
		// The national id was resolved to the person.
		if n := b.count(t, `SELECT count(*) FROM bill WHERE external_no = 'MZ-1' AND person_id = $1`, p2); n != 1 {
			t.Fatal("national_id not resolved")
		}
		var total string
		if err := b.pool.QueryRow(b.ctx, `SELECT total::text FROM bill WHERE external_no = 'ZY-1'`).Scan(&total); err != nil || total != "7193.60" {
			t.Fatalf("total %s %v", total, err)
		}
	})

	t.Run("re-import is idempotent", func(t *testing.T) {
		rep, err := importCSV(t, b, good, ImportOptions{})
		if err != nil || rep.Bills.Unchanged != 2 || rep.Bills.Added+rep.Bills.Updated != 0 || rep.Lines != 0 {
			t.Fatalf("report %+v %v", rep, err)
		}
	})

	t.Run("correction while open, refused once settled", func(t *testing.T) {
		changed := strings.Replace(good, "CW001,床位费,A,8,30,240.00", "CW001,床位费,A,7,30,210.00", 1)
		rep, err := importCSV(t, b, changed, ImportOptions{})
		if err != nil || rep.Bills.Updated != 1 || rep.Bills.Unchanged != 1 || rep.Lines != 3 {
			t.Fatalf("report %+v %v", rep, err)
		}
		var id int64
		var version int
		if err := b.pool.QueryRow(b.ctx, `SELECT id, version FROM bill WHERE external_no = 'ZY-1'`).Scan(&id, &version); err != nil || version != 2 {
			t.Fatalf("version %d %v", version, err)
		}
		if _, err := b.svc.Settle(b.ctx, nil, id, SettleOptions{}); err != nil {
			t.Fatal(err)
		}
		rep, err = importCSV(t, b, good, ImportOptions{})
		if !apperr.Is(err, apperr.Invalid) || len(rep.Errors) != 1 || rep.Errors[0].Column != "external_no" || !strings.Contains(rep.Errors[0].Reason, "settled") {
			t.Fatalf("changing a settled bill: %v %+v", err, rep)
		}
		b.verify(t)
	})

	t.Run("a clerk imports their facility's bills only", func(t *testing.T) {
		rep, err := importCSV(t, b, good, ImportOptions{Facility: tCounty})
		found := false
		for _, e := range rep.Errors {
			found = found || e.Line == 5 && e.Column == "facility_code"
		}
		if !apperr.Is(err, apperr.Invalid) || !found {
			t.Fatalf("%v %+v", err, rep.Errors)
		}
	})

	t.Run("header", func(t *testing.T) {
		for _, body := range []string{"", "a,b\n1,2\n"} {
			if rep, err := importCSV(t, b, body, ImportOptions{}); !apperr.Is(err, apperr.Invalid) || rep != nil || !strings.Contains(err.Error(), "line 1") {
				t.Errorf("%q: %v %v", body, rep, err)
			}
		}
	})
}
