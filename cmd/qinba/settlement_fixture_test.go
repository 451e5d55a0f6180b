package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/settlement"
)

// Settlement fixtures for the harness tests: a trusted service on the test
// database (no principal), households, bills, settlements, clearing runs.

// otherRegionPolicy is the reference policy for the second county (region
// 420625), so that fixtures can settle bills there.
func otherRegionPolicy(t *testing.T) *settlement.Policy {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(settlement.ReferencePolicy().Source(), &m); err != nil {
		t.Fatal(err)
	}
	m["id"], m["region"] = "test-420625-2019", otherRegion
	data, _ := json.Marshal(m)
	p, err := settlement.ParsePolicy(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stlSvc is a settlement service on the test server's database, acting for
// nobody (like the CLI), with a policy for the second county as well.
func stlSvc(t *testing.T, ts *testServer) *settlement.Service {
	t.Helper()
	reg, err := settlement.NewRegistry(otherRegionPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	return settlement.NewService(ts.Pool, nil, reg)
}

// stlHousehold adds a household of village with category and one member
// per relation (insured in 2019); it returns the household id and the
// members' ids.
func stlHousehold(t *testing.T, ts *testServer, village, category string, relations ...string) (string, []int64) {
	t.Helper()
	ctx := context.Background()
	n := ts.seq.Add(1)
	hh := fmt.Sprintf("SHH-%d", n)
	if _, err := ts.Owner.Exec(ctx, `INSERT INTO household (id, village_code, category) VALUES ($1, $2, $3)`, hh, village, category); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i, rel := range relations {
		id17 := fmt.Sprintf("42062619750%d%02d%03d", 1+i%9, 1+n%28, n%1000)
		var id int64
		if err := ts.Owner.QueryRow(ctx, `INSERT INTO person (national_id, name, household_id, relation) VALUES ($1, $2, $3, $4) RETURNING id`,
			id17+string(household.CheckChar(id17)), fmt.Sprintf("成员%d", i+1), hh, rel).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Owner.Exec(ctx, `INSERT INTO person_insurance (person_id, year, insured) VALUES ($1, 2019, true)`, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return hh, ids
}

// stlInpatient is an inpatient bill body at fac for person.
func stlInpatient(person int64, fac, admitted, discharged string, lines ...settlement.LineInput) settlement.BillInput {
	return settlement.BillInput{PersonID: person, Facility: fac, Kind: settlement.KindInpatient, AdmittedOn: admitted, DischargedOn: discharged, Lines: lines}
}

// stlLine is one item of quantity 1.
func stlLine(class, amount string) settlement.LineInput {
	return settlement.LineInput{ItemCode: "ITEM-" + class, Name: "项目" + class, Class: class, Quantity: "1", UnitPrice: amount}
}

// stlBill records an inpatient stay at fac for a new patient of a village
// of fac's region and returns the bill id.
func stlBill(t *testing.T, ts *testServer, svc *settlement.Service, fac string) int64 {
	t.Helper()
	village := facVillage
	if fac == facOtherCounty || fac == facOtherTown || fac == facOtherVillage {
		village = facOtherVillage
	}
	_, ids := stlHousehold(t, ts, village, "registered_poor", "head")
	in := stlInpatient(ids[0], fac, "2019-06-01", "2019-06-06", stlLine("A", "4000"), stlLine("B", "800"), stlLine("C", "150"))
	if strings.HasPrefix(fac, "V") { // a village clinic has outpatients only
		in = settlement.BillInput{PersonID: ids[0], Facility: fac, Kind: settlement.KindOutpatient, VisitOn: "2019-06-01", Lines: in.Lines[:1]}
	}
	v, _, err := svc.CreateBill(context.Background(), nil, &in)
	if err != nil {
		t.Fatalf("bill at %s: %v", fac, err)
	}
	return v.ID
}

// stlSettled records and settles a bill at fac; it returns the settlement id.
func stlSettled(t *testing.T, ts *testServer, svc *settlement.Service, fac string) int64 {
	t.Helper()
	out, err := svc.Settle(context.Background(), nil, stlBill(t, ts, svc, fac), settlement.SettleOptions{})
	if err != nil {
		t.Fatalf("settle at %s: %v", fac, err)
	}
	return out.Settlement.ID
}

// stlPeriod returns a month no test has cleared yet (the 2000s).
func stlPeriod(ts *testServer) string {
	return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, int(ts.seq.Add(1)%240), 0).Format("2006-01")
}

// stlCleared records a clearing run of fac and returns its id.
func stlCleared(t *testing.T, ts *testServer, svc *settlement.Service, fac string) int64 {
	t.Helper()
	p, _ := settlement.ParsePeriod(stlPeriod(ts))
	run, err := svc.RunClearing(context.Background(), nil, p, fac)
	if err != nil {
		t.Fatalf("clearing %s: %v", fac, err)
	}
	return run.ID
}

func ptr[T any](v T) *T { return &v }
