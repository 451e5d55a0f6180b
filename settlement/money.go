package settlement

import (
	"encoding/json"
	"fmt"

	"github.com/shopspring/decimal"
)

// Money is an amount in yuan that is written to JSON as a string with
// exactly two decimals ("12.50"), never as a JSON number and never as
// "-0.00". It is the amount type of [Trace] and of the JSON form of
// [Result]; the engine itself computes with [decimal.Decimal].
type Money struct{ decimal.Decimal }

// M wraps d as a [Money].
func M(d decimal.Decimal) Money { return Money{d} }

// String returns the amount with exactly two decimals, rounded half up.
func (m Money) String() string { return FormatMoney(m.Decimal) }

// Format makes %s, %v and %q print the two-decimal form (with width and
// flags); other verbs format the underlying decimal.
func (m Money) Format(f fmt.State, verb rune) {
	switch verb {
	case 's', 'v', 'q':
		fmt.Fprintf(f, fmt.FormatString(f, verb), m.String())
	default:
		m.Decimal.Format(f, verb)
	}
}

// MarshalJSON writes the amount as a JSON string with two decimals.
func (m Money) MarshalJSON() ([]byte, error) {
	s := FormatMoney(m.Decimal)
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// UnmarshalJSON reads an amount written as SPEC.md requires: a JSON string
// of digits with at most two decimals. Negative amounts are accepted only
// with a leading minus (as [Money.MarshalJSON] writes reversals); JSON
// numbers are rejected.
func (m *Money) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("amount must be a JSON string, got %s", data)
	}
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	d, ok := ParseAmount(s)
	if !ok {
		return fmt.Errorf("bad amount %q", s)
	}
	if neg {
		d = d.Neg()
	}
	m.Decimal = d
	return nil
}

// Exact is a decimal written to JSON as a string in its exact shortest form
// ("0.75", "1234.5675"): rates, shares and factors from a policy, and the
// unrounded intermediate figures of a [Trace]. It does not depend on the
// global decimal.MarshalJSONWithoutQuotes setting.
type Exact struct{ decimal.Decimal }

// MarshalJSON writes the value as a JSON string.
func (x Exact) MarshalJSON() ([]byte, error) {
	s := x.Decimal.String()
	if x.Decimal.IsZero() {
		s = "0"
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// FormatMoney renders d with exactly two decimals, rounding half up, and
// never returns "-0.00".
func FormatMoney(d decimal.Decimal) string {
	r := d.Round(2)
	if r.IsZero() {
		return "0.00"
	}
	return r.StringFixed(2)
}

// ParseAmount parses an input amount as SPEC.md writes it: one or more
// digits, optionally a dot and one or two digits ("12", "12.5", "12.50").
// Anything else ("-1", "1e3", ".5", "12.", "1.005", "+1", " 1") is refused.
func ParseAmount(s string) (decimal.Decimal, bool) {
	if !isAmount(s) {
		return decimal.Decimal{}, false
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, false
	}
	return d, true
}

// isAmount reports whether s matches ^\d+(\.\d{1,2})?$.
func isAmount(s string) bool {
	i, n := 0, len(s)
	for i < n && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	if i == n {
		return true
	}
	if s[i] != '.' {
		return false
	}
	frac := n - i - 1
	if frac < 1 || frac > 2 {
		return false
	}
	for j := i + 1; j < n; j++ {
		if !isDigit(s[j]) {
			return false
		}
	}
	return true
}

// isNumber reports whether s matches ^-?\d+(\.\d+)?$, the form of every
// figure in a policy file (the minus is accepted so that a negative figure is
// reported as negative rather than as badly written).
func isNumber(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	i, n := 0, len(s)
	for i < n && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	if i == n {
		return true
	}
	if s[i] != '.' || i+1 == n {
		return false
	}
	for j := i + 1; j < n; j++ {
		if !isDigit(s[j]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// round2 rounds half up (away from zero) to the fen. SPEC.md applies it
// exactly where it writes round2 and nowhere else.
func round2(x decimal.Decimal) decimal.Decimal { return x.Round(2) }

// pos returns max(x, 0).
func pos(x decimal.Decimal) decimal.Decimal {
	if x.Sign() < 0 {
		return decimal.Decimal{}
	}
	return x
}

// minDec returns the smaller of a and b.
func minDec(a, b decimal.Decimal) decimal.Decimal {
	if b.Cmp(a) < 0 {
		return b
	}
	return a
}

// hasAtMost2Places reports whether d is a whole number of fen.
func hasAtMost2Places(d decimal.Decimal) bool {
	if d.Exponent() >= -2 {
		return true
	}
	return d.Equal(d.Truncate(2))
}

// Limit is an optional cap: a null cap in a policy file is no cap.
type Limit struct {
	// Set is false for "no cap".
	Set bool
	// Value is the cap when Set.
	Value decimal.Decimal
}

// remaining returns pos(cap − used), or ok=false when there is no cap.
func (l Limit) remaining(used decimal.Decimal) (decimal.Decimal, bool) {
	if !l.Set {
		return decimal.Decimal{}, false
	}
	return pos(l.Value.Sub(used)), true
}

// MarshalJSON writes the cap as a two-decimal string, or null for no cap.
func (l Limit) MarshalJSON() ([]byte, error) {
	if !l.Set {
		return []byte("null"), nil
	}
	return Money{l.Value}.MarshalJSON()
}
