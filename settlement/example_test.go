package settlement_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/settlement"
)

func ExamplePolicy_Settle() {
	p := settlement.ReferencePolicy()
	person := settlement.Person{Category: settlement.CategoryRegisteredPoor, Insured: true}
	var acc settlement.Accumulators // a new year
	bill := settlement.Bill{
		ID: "b1", Kind: settlement.KindInpatient, Tier: settlement.TierCounty, Emergency: true,
		Lines: []settlement.Line{
			{Class: settlement.ClassA, Amount: decimal.RequireFromString("1000")},
			{Class: settlement.ClassC, Amount: decimal.RequireFromString("500")},
		},
	}
	r, acc, err := p.Settle(person, acc, bill)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, st := range r.Trace.Steps {
		fmt.Printf("%-13s %s %8s (capped %v)\n", st.Fund, st.Label.ZH, st.Amount, st.Capped)
	}
	fmt.Println("patient", settlement.FormatMoney(r.Patient), "admissions", acc.Admissions)

	_, acc, _ = settlement.Reverse(r, acc)
	fmt.Println("after reversal, admissions", acc.Admissions)
	// Output:
	// deductible    起付线   250.00 (capped false)
	// basic         基本医保（住院统筹）   600.00 (capped false)
	// critical      大病保险     0.00 (capped false)
	// assistance    医疗救助   240.00 (capped false)
	// supplementary 补充医疗保险    80.00 (capped false)
	// backstop      政府兜底     0.00 (capped false)
	// hospital      医院承担政策外费用   350.00 (capped true)
	// patient 230.00 admissions 1
	// after reversal, admissions 0
}

func ExampleRunCases() {
	in := `{"cases": [{"id": "c1", "person": {"category": "none", "insured": true}, "bills": [
	  {"id": "o1", "date": "2019-03-02", "kind": "outpatient", "tier": "village",
	   "lines": [{"class": "A", "amount": "100"}]},
	  {"reverse": "o1"}]},
	 {"id": "c2", "person": {"category": "none", "insured": true}, "bills": [
	  {"id": "b1", "date": "2019-03-02", "kind": "inpatient", "tier": "province", "lines": []}]}]}`
	if err := settlement.RunCases(settlement.ReferencePolicy(), strings.NewReader(in), os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"cases":[{"id":"c1","results":[{"bill":"o1","total":"100.00","eligible":"100.00","deductible":"0.00","basic":"30.00","critical":"0.00","assistance":"0.00","supplementary":"0.00","backstop":"0.00","hospital":"0.00","patient":"70.00"},{"bill":"o1","reversal":true,"total":"-100.00","eligible":"-100.00","deductible":"0.00","basic":"-30.00","critical":"0.00","assistance":"0.00","supplementary":"0.00","backstop":"0.00","hospital":"0.00","patient":"-70.00"}]},{"id":"c2","error":"unknown inpatient tier 'province'"}]}
}

func ExampleParsePolicy() {
	_, err := settlement.ParsePolicy([]byte(strings.Replace(string(settlement.ReferencePolicy().Source()),
		`"county":   {"deductible": "500", "rate": "0.75"}`, `"county":   {"deductible": "500", "rate": "1.75"}`, 1)))
	fmt.Println(err)
	// Output:
	// basic.tiers.county.rate: rate above 1
}
