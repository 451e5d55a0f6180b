package settlement

import (
	"testing"

	"github.com/shopspring/decimal"
)

// benchBill is a 20-line inpatient bill mixing the three item classes.
func benchBill() Bill {
	b := Bill{ID: "bench", Kind: KindInpatient, Tier: TierCounty,
		Referral: &Referral{Direction: DirectionUp, PriorDeductiblePaid: decimal.RequireFromString("62.50")}}
	classes := []string{ClassA, ClassA, ClassB, ClassA, ClassC}
	for i := range 20 {
		b.Lines = append(b.Lines, Line{Class: classes[i%len(classes)], Amount: decimal.New(int64(123456+i*7919), -2)})
	}
	return b
}

// BenchmarkSettleInpatient20Lines settles a 20-line inpatient bill of a poor
// person on a repeat admission (every fund and the trace are computed).
func BenchmarkSettleInpatient20Lines(b *testing.B) {
	p := ReferencePolicy()
	bill := benchBill()
	person := Person{Category: CategoryRegisteredPoor, Insured: true}
	acc := Accumulators{Admissions: 1, BasicPaid: decimal.RequireFromString("2622.00"),
		CriticalBase: decimal.RequireFromString("9000.00"), PatientInPolicy: decimal.RequireFromString("3000.00")}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.Settle(person, acc, bill); err != nil {
			b.Fatal(err)
		}
	}
}
