package settlement

import (
	"strconv"
	"unicode/utf8"
)

// appendResultJSON appends the JSON of r: exactly the bytes json.Marshal(r)
// gives (Result.MarshalJSON and the Trace types' encoding, field by field,
// with encoding/json's string escaping), without reflection. Every
// settlement stores its result with its trace, so this is on the hot path;
// TestFastResultJSON compares it with json.Marshal on many results.
func appendResultJSON(b []byte, r *Result) []byte {
	b = append(b, `{"bill":`...)
	b = appendString(b, r.BillID)
	b = append(b, `,"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"tier":`...)
	b = appendString(b, r.Tier)
	b = append(b, `,"insured":`...)
	b = strconv.AppendBool(b, r.Insured)
	if r.Reversal {
		b = append(b, `,"reversal":true`...)
	}
	b = appendMoneyField(b, `,"total":`, M(r.Total))
	b = appendMoneyField(b, `,"eligible":`, M(r.Eligible))
	b = appendMoneyField(b, `,"deductible":`, M(r.Deductible))
	b = appendMoneyField(b, `,"basic":`, M(r.Basic))
	b = appendMoneyField(b, `,"critical":`, M(r.Critical))
	b = appendMoneyField(b, `,"assistance":`, M(r.Assistance))
	b = appendMoneyField(b, `,"supplementary":`, M(r.Supplementary))
	b = appendMoneyField(b, `,"backstop":`, M(r.Backstop))
	b = appendMoneyField(b, `,"hospital":`, M(r.Hospital))
	b = appendMoneyField(b, `,"patient":`, M(r.Patient))
	b = append(b, `,"delta":`...)
	b = appendAccumulators(b, &r.Delta)
	b = append(b, `,"trace":`...)
	b = appendTrace(b, &r.Trace)
	return append(b, '}')
}

// appendAccumulators writes what Accumulators.MarshalJSON writes: a map,
// so its keys in sorted order.
func appendAccumulators(b []byte, a *Accumulators) []byte {
	b = append(b, `{"admissions":`...)
	b = strconv.AppendInt(b, int64(a.Admissions), 10)
	b = appendExactField(b, `,"assistance_paid":`, Exact{a.AssistancePaid})
	b = appendExactField(b, `,"backstop_paid":`, Exact{a.BackstopPaid})
	b = appendExactField(b, `,"basic_paid":`, Exact{a.BasicPaid})
	b = appendExactField(b, `,"critical_base":`, Exact{a.CriticalBase})
	b = appendExactField(b, `,"critical_paid":`, Exact{a.CriticalPaid})
	b = appendExactField(b, `,"outpatient_paid":`, Exact{a.OutpatientPaid})
	b = appendExactField(b, `,"patient_in_policy":`, Exact{a.PatientInPolicy})
	b = appendExactField(b, `,"supplementary_paid":`, Exact{a.SupplementaryPaid})
	return append(b, '}')
}

func appendTrace(b []byte, t *Trace) []byte {
	b = append(b, `{"policy":`...)
	b = appendString(b, t.Policy)
	b = append(b, `,"kind":`...)
	b = appendString(b, t.Kind)
	b = append(b, `,"tier":`...)
	b = appendString(b, t.Tier)
	b = append(b, `,"category":`...)
	b = appendString(b, t.Category)
	b = append(b, `,"poor":`...)
	b = strconv.AppendBool(b, t.Poor)
	b = append(b, `,"insured":`...)
	b = strconv.AppendBool(b, t.Insured)
	if t.Reversal {
		b = append(b, `,"reversal":true`...)
	}
	b = append(b, `,"classes":`...)
	if t.Classes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range t.Classes {
			if i > 0 {
				b = append(b, ',')
			}
			c := &t.Classes[i]
			b = append(b, `{"class":`...)
			b = appendString(b, c.Class)
			b = append(b, `,"label":`...)
			b = appendLabel(b, c.Label)
			b = appendMoneyField(b, `,"amount":`, c.Amount)
			b = appendExactField(b, `,"eligible_share":`, c.EligibleShare)
			b = appendExactField(b, `,"eligible":`, c.Eligible)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendMoneyField(b, `,"total":`, t.Total)
	b = appendMoneyField(b, `,"eligible":`, t.Eligible)
	b = appendMoneyField(b, `,"out_of_policy":`, t.OutOfPolicy)
	b = append(b, `,"steps":`...)
	if t.Steps == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range t.Steps {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStep(b, &t.Steps[i])
		}
		b = append(b, ']')
	}
	b = appendMoneyField(b, `,"patient_in_policy":`, t.PatientInPolicy)
	b = appendMoneyField(b, `,"patient_out_of_policy":`, t.PatientOutOfPolicy)
	b = appendMoneyField(b, `,"patient":`, t.Patient)
	if len(t.Notes) > 0 {
		b = append(b, `,"notes":[`...)
		for i, n := range t.Notes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendLabel(b, n)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendStep(b []byte, s *Step) []byte {
	b = append(b, `{"fund":`...)
	b = appendString(b, s.Fund)
	b = append(b, `,"label":`...)
	b = appendLabel(b, s.Label)
	b = append(b, `,"applies":`...)
	b = strconv.AppendBool(b, s.Applies)
	if s.Reason != (Label{}) {
		b = append(b, `,"reason":`...)
		b = appendLabel(b, s.Reason)
	}
	b = appendMoneyField(b, `,"base":`, s.Base)
	b = append(b, `,"base_label":`...)
	b = appendLabel(b, s.BaseLabel)
	if s.Rate != nil {
		b = appendExactField(b, `,"rate":`, *s.Rate)
	}
	if len(s.Derivation) > 0 {
		b = append(b, `,"derivation":[`...)
		for i := range s.Derivation {
			if i > 0 {
				b = append(b, ',')
			}
			it := &s.Derivation[i]
			b = append(b, `{"code":`...)
			b = appendString(b, it.Code)
			b = append(b, `,"label":`...)
			b = appendLabel(b, it.Label)
			b = append(b, `,"op":`...)
			b = appendString(b, it.Op)
			b = appendExactField(b, `,"value":`, it.Value)
			b = appendExactField(b, `,"result":`, it.Result)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(s.Segments) > 0 {
		b = append(b, `,"segments":[`...)
		for i := range s.Segments {
			if i > 0 {
				b = append(b, ',')
			}
			sg := &s.Segments[i]
			b = appendMoneyField(b, `{"from":`, sg.From)
			b = appendLimitField(b, `,"to":`, sg.To)
			b = appendExactField(b, `,"rate":`, sg.Rate)
			b = appendMoneyField(b, `,"base":`, sg.Base)
			b = appendExactField(b, `,"amount":`, sg.Amount)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendMoneyField(b, `,"computed":`, s.Computed)
	if len(s.Caps) > 0 {
		b = append(b, `,"caps":[`...)
		for i := range s.Caps {
			if i > 0 {
				b = append(b, ',')
			}
			c := &s.Caps[i]
			b = append(b, `{"code":`...)
			b = appendString(b, c.Code)
			b = append(b, `,"label":`...)
			b = appendLabel(b, c.Label)
			b = appendLimitField(b, `,"limit":`, c.Limit)
			b = appendMoneyField(b, `,"used":`, c.Used)
			b = appendLimitField(b, `,"remaining":`, c.Remaining)
			b = append(b, `,"bit":`...)
			b = strconv.AppendBool(b, c.Bit)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"capped":`...)
	b = strconv.AppendBool(b, s.Capped)
	b = appendMoneyField(b, `,"amount":`, s.Amount)
	return append(b, '}')
}

func appendLabel(b []byte, l Label) []byte {
	b = append(b, `{"zh":`...)
	b = appendString(b, l.ZH)
	b = append(b, `,"en":`...)
	b = appendString(b, l.EN)
	return append(b, '}')
}

func appendMoneyField(b []byte, name string, m Money) []byte {
	b = append(b, name...)
	b = append(b, '"')
	b = append(b, FormatMoney(m.Decimal)...)
	return append(b, '"')
}

func appendExactField(b []byte, name string, x Exact) []byte {
	b = append(b, name...)
	js, _ := x.MarshalJSON()
	return append(b, js...)
}

func appendLimitField(b []byte, name string, l Limit) []byte {
	if !l.Set {
		b = append(b, name...)
		return append(b, "null"...)
	}
	return appendMoneyField(b, name, M(l.Value))
}

const hexDigits = "0123456789abcdef"

// appendString writes s as encoding/json does (HTML-safe escaping, invalid
// UTF-8 as U+FFFD, U+2028 and U+2029 escaped).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
