package household

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
)

// testVillages is a small facility table for parser tests.
var testVillages = Villages{
	"V420626-001": facility.Village,
	"V420626-002": facility.Village,
	"T420626-01":  facility.Township,
}

// Identity numbers for fixtures (all valid).
var (
	idHead   = withCheck("42062619700101001") // male
	idSpouse = withCheck("42062619720202002") // female
	idChild  = withCheck("42062620000303003")
	idHead2  = withCheck("42062619650505005")
	idChild2 = withCheck("42062619950606006")
)

const header = "household_id,national_id,name,relation,village_code,category,insured\n"

func parse(t *testing.T, csv string) *Roster {
	t.Helper()
	ro, err := ParseRoster(strings.NewReader(csv), testVillages, time.Now(), nil)
	if err != nil {
		t.Fatalf("ParseRoster: %v", err)
	}
	return ro
}

func errorStrings(es []RowError) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.String()
	}
	return out
}

func TestParseRosterGood(t *testing.T) {
	t.Parallel()
	csv := header +
		"H1," + idHead + ",张三,head,V420626-001,registered_poor,true\n" +
		"H1," + idSpouse + ",李四,spouse,V420626-001,registered_poor,false\n" +
		"H2," + idHead2 + ",王五,head,V420626-002,none,TRUE\n"
	ro := parse(t, csv)
	if len(ro.Errors) != 0 {
		t.Fatalf("errors: %v", errorStrings(ro.Errors))
	}
	if len(ro.Rows) != 3 || len(ro.Households) != 2 {
		t.Fatalf("%d rows, %d households", len(ro.Rows), len(ro.Households))
	}
	r := ro.Rows[1]
	if r.Line != 3 || r.HouseholdID() != "H1" || r.NationalID() != idSpouse || r.Name() != "李四" || r.Relation() != Spouse ||
		r.VillageCode() != "V420626-001" || r.Category() != RegisteredPoor || r.Insured || !r.OK {
		t.Errorf("row 2 = %+v", r)
	}
	h := ro.Households[1]
	if h.ID != "H2" || h.VillageCode != "V420626-002" || h.Category != None || h.Line != 4 || len(h.Rows) != 1 {
		t.Errorf("household 2 = %+v", h)
	}
}

func TestParseRosterFormats(t *testing.T) {
	t.Parallel()
	good := func(hh, id, name string) string {
		return hh + "," + id + "," + name + ",head,V420626-001,dibao,true"
	}
	for _, tc := range []struct {
		name  string
		csv   string
		rows  int
		names []string
	}{
		{"BOM", "\ufeff" + header + good("H1", idHead, "张三") + "\n", 1, []string{"张三"}},
		{"CRLF", strings.ReplaceAll(header+good("H1", idHead, "张三")+"\n"+good("H2", idHead2, "王五")+"\n", "\n", "\r\n"), 2, []string{"张三", "王五"}},
		{"no final newline", header + good("H1", idHead, "张三"), 1, []string{"张三"}},
		{"quoted fields", header + `"H1","` + idHead + `","Zhang, San","head","V420626-001","dibao","true"` + "\n", 1, []string{"Zhang, San"}},
		{"quoted quote", header + good("H1", idHead, `"O""Brien"`) + "\n", 1, []string{`O"Brien`}},
		{"spaces around fields", header + " H1 , " + idHead + " , 张三 , head , V420626-001 , dibao , true \n", 1, []string{"张三"}},
		{"blank lines skipped", header + "\n" + good("H1", idHead, "张三") + "\n\n", 1, []string{"张三"}},
		{"lowercase x normalised", header + good("H1", "11010519491231002x", "张三") + "\n", 1, []string{"张三"}},
		{"header with spaces", "household_id, national_id, name, relation, village_code, category, insured\n" + good("H1", idHead, "张三") + "\n", 1, []string{"张三"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := parse(t, tc.csv)
			if len(ro.Errors) != 0 {
				t.Fatalf("errors: %v", errorStrings(ro.Errors))
			}
			var names []string
			for _, r := range ro.Rows {
				names = append(names, r.Name())
			}
			if len(ro.Rows) != tc.rows || !slices.Equal(names, tc.names) {
				t.Errorf("rows %d %v, want %d %v", len(ro.Rows), names, tc.rows, tc.names)
			}
			if tc.name == "lowercase x normalised" && ro.Rows[0].NationalID() != "11010519491231002X" {
				t.Errorf("national id %s not normalised", ro.Rows[0].NationalID())
			}
		})
	}
}

func TestParseRosterHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, csv string }{
		{"empty file", ""},
		{"wrong header", "id,national_id,name,relation,village_code,category,insured\n"},
		{"missing column", "household_id,national_id,name,relation,village_code,category\n"},
		{"extra column", "household_id,national_id,name,relation,village_code,category,insured,note\n"},
		{"columns reordered", "national_id,household_id,name,relation,village_code,category,insured\n"},
		{"no header, data first", "H1," + idHead + ",张三,head,V420626-001,dibao,true\n"},
		{"broken quote in header", "\"household_id,national_id\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRoster(strings.NewReader(tc.csv), testVillages, time.Now(), nil)
			var he *HeaderError
			if !errors.As(err, &he) || !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("err = %v, want a HeaderError", err)
			}
			if !strings.HasPrefix(err.Error(), "invalid: line 1: ") {
				t.Errorf("message %q", err.Error())
			}
		})
	}
}

// TestParseRosterBadRows has a bad line of every kind the file alone can
// show, and checks that each is reported with its line and column.
func TestParseRosterBadRows(t *testing.T) {
	t.Parallel()
	lines := []string{
		"H1," + idHead + ",张三,head,V420626-001,registered_poor,true",                          // 2 good
		"H1," + idSpouse[:17] + "0,李四,spouse,V420626-001,registered_poor,true",                // 3 bad check character (set below)
		"H1," + withCheck("42062619990230123") + ",王一,child,V420626-001,registered_poor,true", // 4 bad date
		"H1,123,王二,child,V420626-001,registered_poor,true",                                    // 5 length
		"H1," + idChild + ",,child,V420626-001,registered_poor,true",                          // 6 empty name
		"H1," + idChild2 + ",王三,cousin,V420626-001,registered_poor,maybe",                     // 7 relation + insured
		"H2," + idHead2 + ",赵六,head,V420626-999,poor,true",                                    // 8 unknown village + category
		"H3," + withCheck("42062619800808008") + ",钱七,head,T420626-01,dibao,true",             // 9 township, not village
		"H3," + idHead + ",钱八,spouse,V420626-001,tekun,true",                                  // 10 same id as line 2; category differs from line 9
		"H4," + withCheck("42062619810909009") + ",孙九,spouse,V420626-001,dibao,true",          // 11 household without head
		"H1," + withCheck("42062619820101010") + ",周十,head,V420626-001,registered_poor,true",  // 12 second head of H1
		"H 5," + withCheck("42062619830101011") + ",吴一,head,V420626-001,dibao,true",           // 13 bad household id
		"H6," + withCheck("42062619840101012") + ",郑二,head,V420626-001,dibao,true,extra",      // 14 extra column
		"H6,short,row", // 15 missing columns
		"H7," + withCheck("42062619850101013") + ",\"冯\x01三\",head,V420626-001,dibao,true",                      // 16 control character
		"H8," + withCheck("42062619860101014") + "," + strings.Repeat("长", 51) + ",head,V420626-001,dibao,true", // 17 long name
		"H9," + withCheck("42062619870101015") + ",\xff\xfe,head,V420626-001,dibao,true",                        // 18 bad UTF-8
		"H10," + withCheck("42062619880101016") + ",陈四,head,V420626-001,dibao,true",                             // 19 good head
		"H10," + withCheck("42062619890101017") + ",陈五,child,V420626-002,none,true",                             // 20 village + category differ in household
		"H11," + withCheck("42062619900101018") + ",a\"b,head,V420626-001,dibao,true",                           // 21 bare quote
	}
	// Make line 3's check character wrong whatever idSpouse's is.
	bad := idSpouse[:17] + string("0123456789X"[(strings.IndexByte("0123456789X", idSpouse[17])+1)%11])
	lines[1] = "H1," + bad + ",李四,spouse,V420626-001,registered_poor,true"
	ro := parse(t, header+strings.Join(lines, "\n")+"\n")
	want := []string{
		"line 2: national_id: the same identity number is on line 10",
		"line 3: national_id: bad check character",
		"line 4: national_id: bad birth date (digits 7-14 are not a real date)",
		"line 5: national_id: must be 18 characters (17 digits and a check digit or X)",
		"line 6: name: must not be empty",
		`line 7: relation: unknown relation "cousin" (head, spouse, child, parent, grandchild or other)`,
		"line 7: insured: must be true or false",
		`line 8: village_code: no facility has the code "V420626-999"`,
		`line 8: category: unknown category "poor" (registered_poor, dibao, tekun or none)`,
		"line 9: village_code: T420626-01 is a township facility, not a village clinic",
		"line 10: national_id: the same identity number is on line 2",
		"line 10: category: household H3 has category dibao on line 9",
		"line 11: relation: household H4 has no head (exactly one line must have relation head)",
		"line 12: relation: household H1 has a second head (the first is on line 2)",
		"line 13: household_id: must be 1 to 32 letters, digits or dashes",
		"line 14: expected 7 fields, got 8",
		"line 15: expected 7 fields, got 3",
		"line 16: name: contains control characters",
		"line 17: name: longer than 50 characters",
		"line 18: name: not valid UTF-8",
		"line 20: village_code: household H10 is in village V420626-001 on line 19",
		"line 20: category: household H10 has category dibao on line 19",
		`line 21: malformed CSV: bare " in non-quoted-field`,
	}
	got := errorStrings(ro.Errors)
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range got {
		if containsDigitsRun(s, 17) {
			t.Errorf("%q shows an identity number", s)
		}
	}
	if len(ro.Rows) != 20 {
		t.Errorf("%d rows, want 20", len(ro.Rows))
	}
}

func TestParseRosterDuplicateAcrossHouseholds(t *testing.T) {
	t.Parallel()
	ro := parse(t, header+
		"H1,"+idHead+",张三,head,V420626-001,dibao,true\n"+
		"H2,"+idHead2+",王五,head,V420626-001,dibao,true\n"+
		"H2,"+idHead+",张三,child,V420626-001,dibao,true\n"+
		"H2,"+idHead+",张三,child,V420626-001,dibao,true\n")
	want := []string{
		"line 2: national_id: the same identity number is on line 4",
		"line 4: national_id: the same identity number is on line 2",
		"line 5: national_id: the same identity number is on line 2",
	}
	if got := errorStrings(ro.Errors); !slices.Equal(got, want) {
		t.Errorf("errors %v, want %v", got, want)
	}
}

func TestParseRosterManyRowsLineNumbers(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(header)
	for i := range 3000 {
		id := withCheck(fmt.Sprintf("420626197001%02d%03d", i%28+1, i%1000))
		if i == 2500 {
			id = "bad"
		}
		fmt.Fprintf(&b, "H%d,%s,\"名\n字\",head,V420626-001,dibao,true\n", i, id)
	}
	ro := parse(t, b.String())
	// Every record spans two lines (a quoted newline): record i starts on
	// line 2+2i.
	found := false
	for _, e := range ro.Errors {
		if e.Column == "national_id" && strings.HasPrefix(e.Reason, "must be 18") {
			found = true
			if e.Line != 2+2*2500 {
				t.Errorf("bad id reported on line %d, want %d", e.Line, 2+2*2500)
			}
		}
	}
	if !found {
		t.Errorf("bad id not reported: %v", errorStrings(ro.Errors)[:min(5, len(ro.Errors))])
	}
}
