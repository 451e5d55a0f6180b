package facility_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/dbtest"
)

func TestTierRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tier   facility.Tier
		parent facility.Tier
		rank   int
	}{
		{facility.City, "", 0},
		{facility.County, facility.City, 1},
		{facility.Township, facility.County, 2},
		{facility.Village, facility.Township, 3},
		{"clinic", "", -1},
	}
	for _, tt := range tests {
		if got := tt.tier.ParentTier(); got != tt.parent {
			t.Errorf("%s.ParentTier() = %q, want %q", tt.tier, got, tt.parent)
		}
		if got := tt.tier.Rank(); got != tt.rank {
			t.Errorf("%s.Rank() = %d, want %d", tt.tier, got, tt.rank)
		}
	}
	if !facility.County.Higher(facility.Village) || facility.Village.Higher(facility.Township) {
		t.Error("Higher is wrong")
	}
}

func TestImportDemoIsIdempotent(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	ctx := context.Background()
	res, err := facility.Import(ctx, pool, bytes.NewReader(facility.DemoCSV))
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 299 || res.Updated != 0 || res.Unchanged != 0 {
		t.Fatalf("first import = %+v", res)
	}
	st, err := facility.NewStore(pool).Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[facility.Tier]int{facility.City: 2, facility.County: 3, facility.Township: 14, facility.Village: 280}
	for tier, n := range want {
		if st[tier] != n {
			t.Errorf("%s: %d facilities, want %d", tier, st[tier], n)
		}
	}
	res, err = facility.Import(ctx, pool, bytes.NewReader(facility.DemoCSV))
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 0 || res.Updated != 0 || res.Unchanged != 299 {
		t.Fatalf("re-import = %+v, want all unchanged", res)
	}
	// A renamed facility is an update, nothing else moves.
	changed := strings.Replace(string(facility.DemoCSV), "城关镇卫生院", "城关镇中心卫生院", 1)
	res, err = facility.Import(ctx, pool, strings.NewReader(changed))
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated != 1 || res.Unchanged != 298 {
		t.Fatalf("changed import = %+v", res)
	}
}

func TestImportRejectsBadRowsAndWritesNothing(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	ctx := context.Background()
	csv := `code,name,tier,parent_code,region_code
C1,City One,city,,420600
K1,County One,county,C1,420626
T1,Township One,township,K1,420626
V1,Village One,village,T9,420626
V2,Village Two,village,K1,420626
T1,Township Again,township,K1,420626
V3,,village,T1,420626
V4,Village Four,hamlet,T1,420626
V5,Village Five,village,T1,4206
C2,City Two,city,K1,420600
`
	_, err := facility.Import(ctx, pool, strings.NewReader(csv))
	var ie *facility.ImportError
	if !errors.As(err, &ie) || !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("err = %v, want an invalid ImportError", err)
	}
	wantLines := map[int]string{5: "unknown parent T9", 6: "must hang under a township", 7: "duplicate code",
		8: "must not be empty", 9: "unknown tier", 10: "6 digits", 11: "city facility has no parent"}
	got := map[int]string{}
	for _, r := range ie.Rows {
		got[r.Line] += r.Reason + ";"
	}
	for line, frag := range wantLines {
		if !strings.Contains(got[line], frag) {
			t.Errorf("line %d: got %q, want it to mention %q", line, got[line], frag)
		}
	}
	for line := range got {
		if _, ok := wantLines[line]; !ok {
			t.Errorf("line %d reported but fine: %q", line, got[line])
		}
	}
	st, err := facility.NewStore(pool).Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for tier, n := range st {
		if n != 0 {
			t.Errorf("%d %s facilities written, want none", n, tier)
		}
	}
}

func TestImportRejectsBadHeader(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	for _, in := range []string{"", "code,name\nC1,x\n", "\"unterminated\n"} {
		if _, err := facility.Import(context.Background(), pool, strings.NewReader(in)); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("import %q: err = %v, want invalid", in, err)
		}
	}
}

func TestTreeQueries(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	ctx := context.Background()
	if _, err := facility.Import(ctx, pool, bytes.NewReader(facility.DemoCSV)); err != nil {
		t.Fatal(err)
	}
	s := facility.NewStore(pool)
	chain, err := s.Chain(ctx, "V420626-001")
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, f := range chain {
		codes = append(codes, f.Code)
	}
	if got := strings.Join(codes, ">"); got != "V420626-001>T420626-01>K420626-01>C4206-01" {
		t.Errorf("chain = %s", got)
	}
	sub, err := s.Subtree(ctx, "T420626-01")
	if err != nil {
		t.Fatal(err)
	}
	if len(sub) < 2 || sub[0].Code != "T420626-01" {
		t.Fatalf("subtree = %v", sub)
	}
	for _, f := range sub[1:] {
		if f.Tier != facility.Village || f.ParentCode != "T420626-01" {
			t.Errorf("subtree member %+v", f)
		}
	}
	ok, err := s.IsAncestor(ctx, "K420626-01", "V420626-001")
	if err != nil || !ok {
		t.Errorf("IsAncestor(county, village) = %v, %v", ok, err)
	}
	if _, err := s.Get(ctx, "nope"); !apperr.Is(err, apperr.NotFound) || !errors.Is(err, facility.ErrNotFound) {
		t.Errorf("Get(nope) = %v", err)
	}
	list, err := s.List(ctx, facility.Filter{Tier: facility.Township, Text: "城关"})
	if err != nil || len(list) != 2 {
		t.Errorf("List(township, 城关) = %v, %v", list, err)
	}
}
