package settlement

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/shopspring/decimal"
)

// UnmarshalJSON reads what [Limit.MarshalJSON] writes: null (no cap) or an
// amount as a string.
func (l *Limit) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		*l = Limit{}
		return nil
	}
	var m Money
	if err := m.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("limit: %w", err)
	}
	*l = Limit{Set: true, Value: m.Decimal}
	return nil
}

// UnmarshalJSON reads what [Result.MarshalJSON] writes, so a stored result
// (with its trace) can be reversed later: marshalling the result read gives
// back the same JSON.
func (r *Result) UnmarshalJSON(data []byte) error {
	var j resultJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*r = Result{
		BillID: j.Bill, Kind: j.Kind, Tier: j.Tier, Insured: j.Insured, Reversal: j.Reversal,
		Total: j.Total.Decimal, Eligible: j.Eligible.Decimal, Deductible: j.Deductible.Decimal,
		Basic: j.Basic.Decimal, Critical: j.Critical.Decimal, Assistance: j.Assistance.Decimal,
		Supplementary: j.Supplementary.Decimal, Backstop: j.Backstop.Decimal,
		Hospital: j.Hospital.Decimal, Patient: j.Patient.Decimal,
		Delta: j.Delta, Trace: j.Trace,
	}
	return nil
}

// Payers returns the result's split in the order of [Funds]: basic,
// critical, assistance, supplementary, backstop, hospital, patient.
func (r *Result) Payers() [7]decimal.Decimal {
	return [7]decimal.Decimal{r.Basic, r.Critical, r.Assistance, r.Supplementary, r.Backstop, r.Hospital, r.Patient}
}
