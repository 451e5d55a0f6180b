package settlement

// Trace explains one settlement so that a billing clerk can check it by hand
// (the UI shows it). It is plain data and serialises to JSON with every
// amount as a string with two decimals (rates and unrounded intermediate
// figures as exact decimal strings) and every label in Chinese and English.
//
// Steps come in the order of SPEC.md: for an inpatient bill deductible,
// basic, critical, assistance, supplementary, backstop, hospital; for an
// outpatient bill only basic; none for an uninsured person.
//
// A trace is read-only: its slices may share memory with the trace of the
// reversal of the same bill.
type Trace struct {
	// Policy is the id of the policy applied.
	Policy string `json:"policy"`
	// Kind and Tier are the bill's.
	Kind string `json:"kind"`
	Tier string `json:"tier"`
	// Category is the person's category; Poor says whether it counts as
	// poor; Insured whether the person is insured for the bill's year.
	Category string `json:"category"`
	Poor     bool   `json:"poor"`
	Insured  bool   `json:"insured"`
	// Reversal is true on the trace of a reversal, which repeats the trace
	// of the reversed settlement (amounts not negated).
	Reversal bool `json:"reversal,omitempty"`
	// Classes gives, per item class present on the bill, the sum of its
	// lines, its eligible share and the (unrounded) eligible part.
	Classes []ClassTrace `json:"classes"`
	// Total is Σ amount; Eligible is round2(Σ amount × eligible_share)
	// (政策范围内费用); OutOfPolicy is Total − Eligible.
	Total       Money `json:"total"`
	Eligible    Money `json:"eligible"`
	OutOfPolicy Money `json:"out_of_policy"`
	// Steps has one entry per fund (and the deductible).
	Steps []Step `json:"steps"`
	// PatientInPolicy is the patient's share of the eligible amount;
	// PatientOutOfPolicy their share of the out-of-policy amount; Patient
	// their total.
	PatientInPolicy    Money `json:"patient_in_policy"`
	PatientOutOfPolicy Money `json:"patient_out_of_policy"`
	Patient            Money `json:"patient"`
	// Notes are remarks that apply to the whole bill.
	Notes []Label `json:"notes,omitempty"`
}

// Label is a text in Chinese and English.
type Label struct {
	ZH string `json:"zh"` // Chinese
	EN string `json:"en"` // English
}

// ClassTrace is the eligible computation of one item class.
type ClassTrace struct {
	Class         string `json:"class"`          // A, B or C
	Label         Label  `json:"label"`          // 甲类, 乙类, 丙类
	Amount        Money  `json:"amount"`         // Σ amounts of the class's lines
	EligibleShare Exact  `json:"eligible_share"` // from the policy
	Eligible      Exact  `json:"eligible"`       // Amount × EligibleShare, before round2 of the sum
}

// Step is one fund's computation (or the deductible's): the base the rate
// applies to, the rate, the amount before caps, each cap with whether it
// bit, and the amount paid.
type Step struct {
	// Fund is "deductible", "basic", "critical", "assistance",
	// "supplementary", "backstop" or "hospital".
	Fund  string `json:"fund"`
	Label Label  `json:"label"`
	// Applies is false when the fund does not apply to this person or bill;
	// Reason then says why and every amount is 0.
	Applies bool  `json:"applies"`
	Reason  Label `json:"reason,omitzero"`
	// Base is the amount the rate applies to, described by BaseLabel.
	Base      Money `json:"base"`
	BaseLabel Label `json:"base_label"`
	// Rate is the rate applied (nil when the step has none, e.g. the
	// deductible); Derivation shows how it (or the deductible, or the
	// critical illness threshold) was obtained from the policy figures.
	Rate       *Exact `json:"rate,omitempty"`
	Derivation []Item `json:"derivation,omitempty"`
	// Segments details the critical illness computation.
	Segments []SegmentTrace `json:"segments,omitempty"`
	// Computed is the amount before caps.
	Computed Money `json:"computed"`
	// Caps lists the limits applied to Computed, in order.
	Caps []CapTrace `json:"caps,omitempty"`
	// Capped is true when a cap lowered the amount.
	Capped bool `json:"capped"`
	// Amount is the step's result (the fund's payment, or the deductible).
	Amount Money `json:"amount"`
}

// Item is one labelled figure of a derivation. Op says how it combines with
// the running value: "=" sets it, "×" multiplies, "+" adds, "−" subtracts,
// "max0" floors at 0, "round2" rounds to the fen, "clamp" limits to [0, 1],
// "info" is a figure shown for reference. Value is the figure, Result the
// running value after the item.
type Item struct {
	Code   string `json:"code"`   // stable identifier, e.g. "poor_rate_bonus"
	Label  Label  `json:"label"`  // what the figure is
	Op     string `json:"op"`     // how it combines, see above
	Value  Exact  `json:"value"`  // the figure
	Result Exact  `json:"result"` // the running value after this item
}

// SegmentTrace is the part of the year's cumulative in-policy self-pay that
// fell in one critical illness segment during this bill.
type SegmentTrace struct {
	// From and To are the segment's absolute bounds (threshold + from);
	// To is null for the last, open segment.
	From Money `json:"from"`
	To   Limit `json:"to"`
	Rate Exact `json:"rate"`
	// Base is the length of the segment covered by this bill; Amount is
	// Rate × Base, unrounded.
	Base   Money `json:"base"`
	Amount Exact `json:"amount"`
}

// CapTrace is one limit applied to a step.
type CapTrace struct {
	// Code identifies the limit ("annual_cap", "per_visit_cap",
	// "poor_annual_cap", "annual_patient_cap", "per_bill_patient_max",
	// "patient_out_of_policy_max", "eligible"); Label describes it.
	Code  string `json:"code"`
	Label Label  `json:"label"`
	// Limit is the limit as configured (null: no limit).
	Limit Limit `json:"limit"`
	// Used is how much of an annual limit earlier bills of the year used.
	Used Money `json:"used"`
	// Remaining is what is left for this bill (null: no limit).
	Remaining Limit `json:"remaining"`
	// Bit is true when this limit lowered the amount.
	Bit bool `json:"bit"`
}

// Fund names used in [Step.Fund].
const (
	FundDeductible    = "deductible"
	FundBasic         = "basic"
	FundCritical      = "critical"
	FundAssistance    = "assistance"
	FundSupplementary = "supplementary"
	FundBackstop      = "backstop"
	FundHospital      = "hospital"
)

// Bilingual labels. They are texts for people, not codes: match on Code and
// Fund, never on labels.
var (
	lblDeductible    = Label{"起付线", "Deductible"}
	lblBasicIn       = Label{"基本医保（住院统筹）", "Basic medical insurance (inpatient)"}
	lblBasicOut      = Label{"基本医保（门诊统筹）", "Basic medical insurance (outpatient)"}
	lblCritical      = Label{"大病保险", "Critical illness insurance"}
	lblAssistance    = Label{"医疗救助", "Medical assistance"}
	lblSupplementary = Label{"补充医疗保险", "Supplementary insurance"}
	lblBackstop      = Label{"政府兜底", "Government backstop"}
	lblHospital      = Label{"医院承担政策外费用", "Out-of-policy cost borne by the hospital"}

	lblClassA = Label{"甲类", "Class A"}
	lblClassB = Label{"乙类", "Class B"}
	lblClassC = Label{"丙类/目录外", "Class C / out of catalogue"}

	lblBaseTierDeductible = Label{"本级医院起付标准", "Deductible of the tier"}
	lblBaseEligible       = Label{"政策范围内费用", "Eligible (in-policy) amount"}
	lblBaseAfterDed       = Label{"政策范围内费用 − 起付线", "Eligible amount − deductible"}
	lblBaseSelfPay        = Label{"本次政策范围内个人负担（政策范围内费用 − 基本医保）", "This bill's in-policy self-pay (eligible − basic)"}
	lblBaseAfterCritical  = Label{"政策范围内费用 − 基本医保 − 大病保险", "Eligible − basic − critical"}
	lblBaseAfterAssist    = Label{"政策范围内费用 − 基本医保 − 大病保险 − 医疗救助", "Eligible − basic − critical − assistance"}
	lblBaseAfterSupp      = Label{"政策范围内个人负担（兜底前）", "In-policy patient share before the backstop"}
	lblBaseOutOfPolicy    = Label{"政策外费用", "Out-of-policy amount"}

	lblRepeatAdmission = Label{"年内再次住院", "Repeat admission in the year"}
	lblPoorDeductible  = Label{"贫困人口起付线降低", "Poverty: reduced deductible"}
	lblReferralDown    = Label{"下转患者免起付线", "Referred down: no deductible"}
	lblReferralUp      = Label{"上转患者扣减转出医院已付起付线", "Referred up: deductible already paid in the referring stay"}
	lblMax0            = Label{"不低于0", "Not below 0"}
	lblRound2          = Label{"四舍五入到分", "Rounded half up to the fen"}
	lblTierRate        = Label{"本级医院报销比例", "Reimbursement rate of the tier"}
	lblPoorRateBonus   = Label{"贫困人口报销比例提高", "Poverty: rate bonus"}
	lblUnreferred      = Label{"未经转诊（非急诊）降低报销比例", "Not referred and not an emergency: rate penalty"}
	lblClamp           = Label{"报销比例限定在0~1", "Rate limited to [0, 1]"}
	lblThreshold       = Label{"大病保险起付线", "Critical illness threshold"}
	lblPoorThreshold   = Label{"贫困人口大病保险起付线降低", "Poverty: reduced threshold"}
	lblSegRateBonus    = Label{"贫困人口各段比例提高", "Poverty: bonus on each segment's rate"}
	lblCumBefore       = Label{"年内累计政策范围内个人负担（本次前）", "Year's cumulative in-policy self-pay before this bill"}
	lblCumAfter        = Label{"年内累计政策范围内个人负担（本次后）", "Year's cumulative in-policy self-pay after this bill"}
	lblFundRate        = Label{"支付比例", "Payment rate"}
	lblMinReimbursed   = Label{"最低报销比例（单次个人负担上限 = 政策范围内费用 × (1 − 比例)）", "Minimum reimbursed share (per-bill patient maximum = eligible × (1 − share))"}
	lblShare           = Label{"个人负担政策外费用比例上限", "Patient's maximum share of the total for out-of-policy cost"}

	lblCapEligible      = Label{"不超过政策范围内费用", "Not more than the eligible amount"}
	lblCapPerVisit      = Label{"单次封顶线", "Per-visit cap"}
	lblCapAnnual        = Label{"年度封顶线", "Annual cap"}
	lblCapPoorAnnual    = Label{"贫困人口年度封顶线", "Annual cap for the poor"}
	lblCapPerBill       = Label{"单次个人负担上限（政策范围内费用 × (1 − 最低报销比例)）", "Per-bill patient maximum (eligible × (1 − minimum reimbursed share))"}
	lblCapAnnualPatient = Label{"个人年度自付封顶", "Annual patient cap"}
	lblCapPatientOOP    = Label{"个人负担政策外费用上限（总费用 × 比例）", "Patient's out-of-policy maximum (total × share)"}

	lblNotPoor          = Label{"仅适用于贫困人口", "Poor persons only"}
	lblNotAssisted      = Label{"该人员类别不在医疗救助范围", "Category not covered by medical assistance"}
	lblNoteUninsured    = Label{"未参加城乡居民医保：各基金不支付，医院不承担，费用由个人全额负担", "Not insured: no fund pays, the hospital absorbs nothing, the patient pays the total"}
	lblNoteOutpatient   = Label{"门诊：仅门诊统筹支付，不设起付线", "Outpatient: only the outpatient pool pays; no deductible"}
	lblNoteReversal     = Label{"冲正：以下为被冲正结算的计算过程，本次各项金额取负", "Reversal: the computation below is that of the reversed settlement; every amount is negated"}
	lblNoteEmergency    = Label{"急诊入院", "Emergency admission"}
	lblNoteReferralUp   = Label{"上转入院", "Admitted on an upward referral"}
	lblNoteReferralDown = Label{"下转入院", "Admitted on a downward referral"}
)

func classLabel(i int) Label {
	switch i {
	case 0:
		return lblClassA
	case 1:
		return lblClassB
	}
	return lblClassC
}
