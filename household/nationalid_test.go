package household

import (
	"testing"
	"time"

	"github.com/qinba/qinba/internal/apperr"
)

// withCheck completes 17 digits with their check character.
func withCheck(s17 string) string { return s17 + string(CheckChar(s17)) }

func TestCheckChar(t *testing.T) {
	t.Parallel()
	// The worked example of GB 11643-1999 and a few computed by hand:
	// sum(d_i * w_i) mod 11 indexes "10X98765432".
	for _, tc := range []struct{ in, want string }{
		{"11010519491231002", "X"},
		{"44052418800101001", "4"},
		{"42062619760412272", "7"},
		{"00000000000000000", "1"},
	} {
		if got := string(CheckChar(tc.in)); got != tc.want {
			t.Errorf("CheckChar(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if CheckChar("1234") != 0 || CheckChar("4206261976041227a") != 0 {
		t.Error("CheckChar accepts short or non-digit input")
	}
}

func TestValidateNationalID(t *testing.T) {
	t.Parallel()
	tomorrow := time.Now().In(china).AddDate(0, 0, 1)
	future := withCheck("420626" + tomorrow.Format("20060102") + "123")
	today := withCheck("420626" + time.Now().In(china).Format("20060102") + "123")
	for _, tc := range []struct {
		name, id string
		reason   string // "" valid
		birth    string
		male     bool
	}{
		{"valid with X", "11010519491231002X", "", "1949-12-31", false},
		{"valid lowercase x accepted", "11010519491231002x", "", "1949-12-31", false},
		{"valid male", "420626197604122727", "", "1976-04-12", false},
		{"valid male odd 17th", withCheck("42062619800229001"), "", "1980-02-29", true},
		{"born today", today, "", time.Now().In(china).Format("2006-01-02"), true},
		{"born 1900-01-01", withCheck("42062619000101002"), "", "1900-01-01", false},
		{"bad check character", "420626197604122728", "bad check character", "", false},
		{"X where a digit is due", "42062619760412272X", "bad check character", "", false},
		{"bad date 19990230", withCheck("42062619990230123"), "bad birth date (digits 7-14 are not a real date)", "", false},
		{"bad month", withCheck("42062619991301123"), "bad birth date (digits 7-14 are not a real date)", "", false},
		{"not a leap year", withCheck("42062619000229123"), "bad birth date (digits 7-14 are not a real date)", "", false},
		{"future date", future, "bad birth date (in the future)", "", false},
		{"before 1900", "440524188001010014", "bad birth date (before 1900)", "", false},
		{"17 characters", "42062619760412272", "must be 18 characters (17 digits and a check digit or X)", "", false},
		{"19 characters", "4206261976041227271", "must be 18 characters (17 digits and a check digit or X)", "", false},
		{"15-digit old format", "420626760412272", "must be 18 characters (17 digits and a check digit or X)", "", false},
		{"empty", "", "must be 18 characters (17 digits and a check digit or X)", "", false},
		{"letter inside", "42062619760412A727", "the first 17 characters must be digits", "", false},
		{"full-width digits", "４２０６２６19760412272", "must be 18 characters (17 digits and a check digit or X)", "", false},
		{"bad check symbol", "42062619760412272Y", "the check character must be a digit or X", "", false},
		{"region starts with 0", withCheck("02062619760412272"), "bad region code (the first 6 digits)", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			birth, male, err := ValidateNationalID(tc.id)
			if tc.reason != "" {
				ae, ok := apperr.As(err)
				if !ok || ae.Code != apperr.Invalid || ae.Fields["national_id"] != tc.reason {
					t.Fatalf("ValidateNationalID(%s) = %v, want national_id: %s", tc.id, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidateNationalID(%s): %v", tc.id, err)
			}
			if got := birth.Format("2006-01-02"); got != tc.birth || male != tc.male {
				t.Errorf("ValidateNationalID(%s) = %s male=%v, want %s male=%v", tc.id, got, male, tc.birth, tc.male)
			}
		})
	}
}

func TestNationalIDErrorNeverRepeatsTheNumber(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"420626197604122728", "420626199902301234", "4206261976041227"} {
		_, _, err := ValidateNationalID(id)
		if err == nil {
			t.Fatalf("%s accepted", id)
		}
		if s := err.Error(); containsDigitsRun(s, 6) {
			t.Errorf("error %q repeats the number", s)
		}
	}
}

func containsDigitsRun(s string, n int) bool {
	run := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			if run++; run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

func TestMaskID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"420626197604121234", "420626********1234"},
		{"11010519491231002X", "110105********002X"},
		{"1234", "****"},
		{"", "****"},
		{"4206261976", "****1976"},
		{"张三李四王五", "****李四王五"},
	} {
		if got := MaskID(tc.in); got != tc.want {
			t.Errorf("MaskID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
