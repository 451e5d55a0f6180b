package household

import (
	"errors"
	"time"

	"github.com/qinba/qinba/internal/apperr"
)

// NationalIDLen is the length of a resident identity number (GB 11643-1999).
const NationalIDLen = 18

var (
	idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	// idCheckChars[sum % 11] is the check character.
	idCheckChars = "10X98765432"
	// china is the zone birth dates and "today" are read in.
	china = time.FixedZone("CST", 8*60*60)
)

// CheckChar returns the GB 11643 check character of the first 17 digits of
// id (which must be 17 or more ASCII digits), or 0 if they are not digits.
func CheckChar(id string) byte {
	if len(id) < 17 {
		return 0
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := id[i]
		if c < '0' || c > '9' {
			return 0
		}
		sum += int(c-'0') * idWeights[i]
	}
	return idCheckChars[sum%11]
}

// NormalizeNationalID upper-cases a trailing check character x; everything
// else is left as given. Stored and compared numbers are normalised.
func NormalizeNationalID(s string) string {
	if len(s) == NationalIDLen && s[17] == 'x' {
		return s[:17] + "X"
	}
	return s
}

// ValidateNationalID checks an 18-character resident identity number
// (GB 11643-1999): 17 digits and a check character (0-9 or X; a lowercase
// x is accepted, see NormalizeNationalID), a real birth date in positions
// 7-14 that is neither in the future (China time) nor before 1900, and the
// check character computed with the weights 7,9,10,5,8,4,2,1,6,3,7,9,10,5,
// 8,4,2. It returns the birth date (midnight UTC of that calendar date) and
// the sex (17th digit odd: male). The region is the first six digits.
//
// The error is an apperr Invalid on the field "national_id"; its message
// never repeats the number.
func ValidateNationalID(s string) (birth time.Time, male bool, err error) {
	reason := checkNationalID(NormalizeNationalID(s), time.Now())
	if reason != "" {
		return time.Time{}, false, apperr.Field("national_id", "%s", reason)
	}
	s = NormalizeNationalID(s)
	birth, _ = birthDate(s)
	return birth, (s[16]-'0')%2 == 1, nil
}

// errBadDate is returned by birthDate for an impossible calendar date.
var errBadDate = errors.New("bad date")

func birthDate(s string) (time.Time, error) {
	num := func(from, to int) int {
		n := 0
		for i := from; i < to; i++ {
			n = n*10 + int(s[i]-'0')
		}
		return n
	}
	y, m, d := num(6, 10), num(10, 12), num(12, 14)
	if m < 1 || m > 12 || d < 1 || d > 31 {
		return time.Time{}, errBadDate
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Year() != y || t.Month() != time.Month(m) || t.Day() != d {
		return time.Time{}, errBadDate // 19990230 normalises to March
	}
	return t, nil
}

// checkNationalID returns "" for a valid (normalised) number, else the
// reason it is not. now decides what "in the future" means.
func checkNationalID(s string, now time.Time) string {
	if len(s) != NationalIDLen {
		return "must be 18 characters (17 digits and a check digit or X)"
	}
	for i := 0; i < 17; i++ {
		if s[i] < '0' || s[i] > '9' {
			return "the first 17 characters must be digits"
		}
	}
	if c := s[17]; (c < '0' || c > '9') && c != 'X' {
		return "the check character must be a digit or X"
	}
	if s[0] == '0' {
		return "bad region code (the first 6 digits)"
	}
	birth, err := birthDate(s)
	if err != nil {
		return "bad birth date (digits 7-14 are not a real date)"
	}
	if birth.Year() < 1900 {
		return "bad birth date (before 1900)"
	}
	y, m, d := now.In(china).Date()
	if birth.After(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)) {
		return "bad birth date (in the future)"
	}
	if CheckChar(s) != s[17] {
		return "bad check character"
	}
	return ""
}

// MaskID shows an identity number as its first 6 and last 4 characters
// with 8 stars between (420626********1234): the form used in lists, logs,
// audit details and exports. Anything that is not 18 ASCII characters is
// masked whole, keeping at most its last 4 characters, so a malformed number
// never leaks either.
func MaskID(s string) string {
	if len(s) == NationalIDLen && isASCII(s) {
		return s[:6] + "********" + s[14:]
	}
	r := []rune(s)
	if len(r) <= 4 {
		return "****"
	}
	return "****" + string(r[len(r)-4:])
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
