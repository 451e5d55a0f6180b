package household

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseRoster feeds arbitrary files to the roster parser and checks
// its promises: no panic; a file is either refused at its header or every
// line is accounted for; reported lines and columns exist and are in
// order; a line marked OK passes every field check; a household with no
// bad line has exactly one head and one village and category; no reason
// repeats an identity number; and deciding the rejects keeps whole
// households together. Seeds: testdata/fuzz/FuzzParseRoster and below.
// idShaped finds an identity number standing on its own.
var idShaped = regexp.MustCompile(`(^|[^0-9])[0-9]{17}[0-9Xx]($|[^0-9])`)

func FuzzParseRoster(f *testing.F) {
	good, _ := badRoster()
	f.Add([]byte(baseRoster))
	f.Add([]byte(good))
	f.Add([]byte("\ufeff" + strings.ReplaceAll(baseRoster, "\n", "\r\n")))
	f.Add([]byte(header + `"H1","` + idHead + `","a ""quoted"", name",head,V420626-001,dibao,true` + "\n"))
	f.Add([]byte(header + "H1," + idHead + ",\"multi\nline\",head,V420626-001,dibao,true\n"))
	f.Add([]byte(header + "H1,x\n\"unterminated"))
	f.Add([]byte("household_id\n"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		ro, err := ParseRoster(strings.NewReader(string(data)), testVillages, now, nil)
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error is not a header error: %v", err)
			}
			return
		}
		lines := strings.Count(string(data), "\n") + 1
		lastLine := 0
		for _, e := range ro.Errors {
			if e.Line < 2 || e.Line > lines {
				t.Fatalf("error on line %d of a %d-line file: %v", e.Line, lines, e)
			}
			if e.Line < lastLine {
				t.Fatalf("errors out of order: %v", ro.Errors)
			}
			lastLine = e.Line
			if e.Column != "" && !slices.Contains(RosterHeader, e.Column) {
				t.Fatalf("unknown column %q", e.Column)
			}
			if e.Reason == "" {
				t.Fatalf("empty reason: %v", e)
			}
			if idShaped.MatchString(e.Reason) {
				t.Fatalf("reason shows an identity number: %q", e.Reason)
			}
		}
		bad := map[int]bool{}
		for _, e := range ro.Errors {
			bad[e.Line] = true
		}
		seen := map[string]bool{}
		for _, r := range ro.Rows {
			if !r.OK {
				if !bad[r.Line] {
					t.Fatalf("line %d not OK but not reported", r.Line)
				}
				continue
			}
			if reason := checkNationalID(r.NationalID(), now); reason != "" {
				t.Fatalf("line %d OK with a bad identity number: %s", r.Line, reason)
			}
			if !r.Relation().Valid() || !r.Category().Valid() || r.Name() == "" || !ValidHouseholdID(r.HouseholdID()) ||
				testVillages[r.VillageCode()] != "village" {
				t.Fatalf("line %d OK with a bad field: %+v", r.Line, r)
			}
			if seen[r.NationalID()] && !bad[r.Line] {
				t.Fatalf("line %d repeats an identity number unreported", r.Line)
			}
			seen[r.NationalID()] = true
		}
		for _, h := range ro.Households {
			clean := true
			heads := 0
			for _, i := range h.Rows {
				r := ro.Rows[i]
				clean = clean && !bad[r.Line]
				if r.Relation() == Head {
					heads++
				}
				if clean && (r.VillageCode() != h.VillageCode || r.Category() != h.Category || r.HouseholdID() != h.ID) {
					t.Fatalf("household %s: line %d disagrees with the household", h.ID, r.Line)
				}
			}
			if clean && heads != 1 {
				t.Fatalf("household %s has %d heads and no bad line", h.ID, heads)
			}
		}
		rep := &Report{Errors: ro.Errors}
		rejected := rejectLines(rep, ro)
		rejectedRows := map[*Row]bool{}
		for _, rj := range rep.rejects {
			rejectedRows[rj.row] = true
			if len(rj.reasons) == 0 {
				t.Fatalf("line %d rejected without a reason", rj.row.Line)
			}
		}
		for _, h := range ro.Households {
			in := rejected[h.ID]
			for _, i := range h.Rows {
				if rejectedRows[ro.Rows[i]] != in {
					t.Fatalf("household %s split: line %d rejected=%v, household rejected=%v", h.ID, ro.Rows[i].Line, !in, in)
				}
			}
		}
		for _, r := range ro.Rows {
			if bad[r.Line] && !rejectedRows[r] {
				t.Fatalf("bad line %d not rejected", r.Line)
			}
		}
	})
}
