package settlement

import (
	"github.com/shopspring/decimal"
)

// The ledger. Every settlement and every reversal posts one balanced
// journal entry (journal_entry + journal_line, append-only) dated on the
// settlement's accounting date (posted_on), at the settling facility.
//
// Chart of accounts (table ledger_account, seeded by migration 0007):
//
//	code  kind     fund           account
//	1221  asset    basic          应收基本医保基金   Receivable: basic medical insurance fund
//	1222  asset    critical       应收大病保险       Receivable: critical illness insurance
//	1223  asset    assistance     应收医疗救助资金   Receivable: medical assistance fund
//	1224  asset    supplementary  应收补充医疗保险   Receivable: supplementary insurance
//	1225  asset    backstop       应收政府兜底资金   Receivable: government backstop fund
//	1231  asset    patient        应收患者自付       Receivable: patient's own share (collected at the desk)
//	5301  expense  hospital       医院承担目录外费用 Write-off: out-of-policy cost borne by the hospital
//	4101  revenue  revenue        医疗收入           Medical service revenue
//
// A settlement of total T split into basic b, critical c, assistance a,
// supplementary s, backstop k, hospital h and patient p (b+c+a+s+k+h+p = T)
// posts
//
//	Dr 1221 b, Dr 1222 c, Dr 1223 a, Dr 1224 s, Dr 1225 k, Dr 1231 p, Dr 5301 h
//	Cr 4101 T
//
// (lines of amount 0 are left out), so the entry balances because the split
// does. A reversal posts the mirror entry (the same accounts, debit and
// credit swapped). What a fund owes a facility for a month — the monthly
// clearing — is the net debit of its receivable account over the entries of
// the facility posted in that month: settlements minus reversals.

// Payers lists who pays a share of a bill, in the order of the split: the
// five funds, then the hospital and the patient.
var Payers = []string{FundBasic, FundCritical, FundAssistance, FundSupplementary, FundBackstop, FundHospital, FundPatient}

// Funds lists the five funds the monthly clearing settles with.
var Funds = []string{FundBasic, FundCritical, FundAssistance, FundSupplementary, FundBackstop}

// FundPatient names the patient's share (the funds are named in trace.go).
const FundPatient = "patient"

// Account is one account of the chart.
type Account struct {
	Code  string `json:"code"`
	Kind  string `json:"kind"` // asset, revenue or expense
	Fund  string `json:"fund"` // the payer it records, or "revenue"
	Label Label  `json:"label"`
}

// AccountRevenue is the revenue account every entry credits (debits, for a
// reversal) with the bill's total.
const AccountRevenue = "4101"

// Chart is the chart of accounts, in the order entries list their lines.
var Chart = []Account{
	{"1221", "asset", FundBasic, Label{"应收基本医保基金", "Receivable: basic medical insurance fund"}},
	{"1222", "asset", FundCritical, Label{"应收大病保险", "Receivable: critical illness insurance"}},
	{"1223", "asset", FundAssistance, Label{"应收医疗救助资金", "Receivable: medical assistance fund"}},
	{"1224", "asset", FundSupplementary, Label{"应收补充医疗保险", "Receivable: supplementary insurance"}},
	{"1225", "asset", FundBackstop, Label{"应收政府兜底资金", "Receivable: government backstop fund"}},
	{"1231", "asset", FundPatient, Label{"应收患者自付", "Receivable: patient's own share"}},
	{"5301", "expense", FundHospital, Label{"医院承担目录外费用", "Write-off: out-of-policy cost borne by the hospital"}},
	{AccountRevenue, "revenue", "revenue", Label{"医疗收入", "Medical service revenue"}},
}

// accountOf maps a payer to its account code.
var accountOf = func() map[string]string {
	m := map[string]string{}
	for _, a := range Chart {
		m[a.Fund] = a.Code
	}
	return m
}()

// AccountOf returns the account code of a payer (a fund, "hospital" or
// "patient").
func AccountOf(payer string) string { return accountOf[payer] }

// PayerLabel returns the bilingual name of a payer.
func PayerLabel(payer string) Label {
	switch payer {
	case FundBasic:
		return Label{"基本医保", "Basic medical insurance"}
	case FundCritical:
		return lblCritical
	case FundAssistance:
		return lblAssistance
	case FundSupplementary:
		return lblSupplementary
	case FundBackstop:
		return lblBackstop
	case FundHospital:
		return Label{"医院承担", "Borne by the hospital"}
	case FundPatient:
		return Label{"个人自付", "Paid by the patient"}
	}
	return Label{payer, payer}
}

// JournalLine is one line of a journal entry: exactly one of Debit and
// Credit is positive.
type JournalLine struct {
	Account string          `json:"account"`
	Debit   decimal.Decimal `json:"-"`
	Credit  decimal.Decimal `json:"-"`
}

// JournalLines returns the balanced lines of the entry of a settlement (or,
// when r is a reversal, whose amounts are negative, of its reversal): a
// positive share is a debit of its payer's account, a negative one a
// credit, and the total goes the other way on the revenue account. Zero
// amounts post no line.
func JournalLines(r *Result) []JournalLine {
	out := make([]JournalLine, 0, 8)
	add := func(account string, amount decimal.Decimal, debitWhenPositive bool) {
		switch s := amount.Sign(); {
		case s == 0:
		case (s > 0) == debitWhenPositive:
			out = append(out, JournalLine{Account: account, Debit: amount.Abs()})
		default:
			out = append(out, JournalLine{Account: account, Credit: amount.Abs()})
		}
	}
	for i, amt := range r.Payers() {
		add(accountOf[Payers[i]], amt, true)
	}
	add(AccountRevenue, r.Total, false)
	return out
}
