package household

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/facility"
)

func TestGenerateRosterFullCounty(t *testing.T) {
	t.Parallel()
	vs := Villages{}
	for _, v := range demoVillageCodes() {
		vs[v] = facility.Village
	}
	data := fullCounty(t)
	ro, err := ParseRoster(bytes.NewReader(data), vs, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ro.Errors) > 0 {
		t.Fatalf("generated roster has bad lines: %v", errorStrings(ro.Errors[:min(5, len(ro.Errors))]))
	}
	if len(ro.Households) != FullCountyHouseholds || len(ro.Rows) != FullCountyPersons {
		t.Fatalf("%d households, %d persons; want %d, %d", len(ro.Households), len(ro.Rows), FullCountyHouseholds, FullCountyPersons)
	}
	cats := map[Category]int{}
	rels := map[Relation]int{}
	regions := map[string]int{}
	villages := map[string]bool{}
	uninsured := 0
	maxSize := 0
	for _, h := range ro.Households {
		cats[h.Category]++
		villages[h.VillageCode] = true
		maxSize = max(maxSize, len(h.Rows))
	}
	for _, r := range ro.Rows {
		rels[r.Relation()]++
		regions[r.NationalID()[:6]]++
		if !r.Insured {
			uninsured++
		}
	}
	for _, c := range Categories {
		if cats[c] < FullCountyHouseholds/50 {
			t.Errorf("category %s: %d households", c, cats[c])
		}
	}
	for _, r := range Relations {
		if rels[r] == 0 {
			t.Errorf("no %s", r)
		}
	}
	if rels[Head] != FullCountyHouseholds || maxSize > 8 {
		t.Errorf("%d heads, largest household %d", rels[Head], maxSize)
	}
	if regions["420626"] < FullCountyPersons*9/10 || len(regions) < 2 {
		t.Errorf("regions %v", regions)
	}
	if uninsured == 0 || uninsured > FullCountyPersons/10 {
		t.Errorf("%d uninsured", uninsured)
	}
	if len(villages) != len(vs) {
		t.Errorf("households in %d of %d villages", len(villages), len(vs))
	}
}

func TestGenerateRosterIsAFunctionOfTheSeed(t *testing.T) {
	t.Parallel()
	gen := func(seed int64) []byte {
		var buf bytes.Buffer
		if err := GenerateRoster(&buf, seed, 2000, []string{"V420626-001", "V420626-002"}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b, c := gen(7), gen(7), gen(8)
	if sha256.Sum256(a) != sha256.Sum256(b) || bytes.Equal(a, c) {
		t.Error("generation is not a function of the seed")
	}
}

func TestGenerateRosterSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ h, p int }{{1, 1}, {1, 8}, {10, 10}, {10, 80}, {100, 297}} {
		var buf bytes.Buffer
		if err := GenerateRosterSize(&buf, 1, tc.h, tc.p, []string{"V420626-001"}); err != nil {
			t.Fatalf("%d/%d: %v", tc.h, tc.p, err)
		}
		if n := strings.Count(buf.String(), "\n") - 1; n != tc.p {
			t.Errorf("%d/%d: %d rows", tc.h, tc.p, n)
		}
	}
	for _, tc := range []struct{ h, p int }{{0, 0}, {1, 9}, {2, 1}} {
		if err := GenerateRosterSize(&bytes.Buffer{}, 1, tc.h, tc.p, []string{"V420626-001"}); err == nil {
			t.Errorf("%d/%d accepted", tc.h, tc.p)
		}
	}
	if err := GenerateRosterSize(&bytes.Buffer{}, 1, 1, 1, nil); err == nil {
		t.Error("no villages accepted")
	}
	var buf bytes.Buffer
	if err := GenerateRoster(&buf, 1, 100, []string{"V420626-001"}); err != nil || strings.Count(buf.String(), "\n")-1 != 100*FullCountyPersons/FullCountyHouseholds {
		t.Errorf("GenerateRoster(100): %v, %d rows", err, strings.Count(buf.String(), "\n")-1)
	}
}

func TestStoreStatsAndLookups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mustImport(t, baseRoster+"H3,"+idChild+",赵六,head,V420626-002,none,false\n", Options{})
	st := NewStore()
	stats, err := st.Stats(b.ctx, b.pool)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Households[RegisteredPoor] != 1 || stats.Persons[RegisteredPoor] != 2 || stats.Households[Dibao] != 1 ||
		stats.Persons[None] != 1 || stats.Households[Tekun] != 0 {
		t.Errorf("stats %+v", stats)
	}
	out := FormatStats(stats)
	if !strings.Contains(out, "registered_poor           1          2") || !strings.Contains(out, "total                     3          4") {
		t.Errorf("FormatStats:\n%s", out)
	}
	p, err := st.GetPersonByNationalID(b.ctx, b.pool, idSpouse)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sex != "F" || p.BirthDate.Format("2006-01-02") != "1972-02-02" || p.Region() != "420626" || p.Category != RegisteredPoor || p.VillageCode != "V420626-001" {
		t.Errorf("person %+v", p)
	}
	got, err := st.GetPerson(b.ctx, b.pool, p.ID)
	if err != nil || got != p {
		t.Errorf("GetPerson = %+v, %v", got, err)
	}
	if _, err := st.GetPerson(b.ctx, b.pool, 123456789); err == nil {
		t.Error("unknown person found")
	}
	// A Person marshalled by mistake shows the masked number.
	js, _ := p.MarshalJSON()
	if strings.Contains(string(js), idSpouse) || !strings.Contains(string(js), MaskID(idSpouse)) {
		t.Errorf("Person JSON %s", js)
	}
	// Sex and birth date cannot be typed: they are generated.
	if _, err := b.owner.Exec(b.ctx, `UPDATE person SET sex = 'F' WHERE id = $1`, p.ID); err == nil {
		t.Error("sex is writable")
	}
}
