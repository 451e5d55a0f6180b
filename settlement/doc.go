// Package settlement owns one-stop settlement (一站式结算): the rules that split
// a hospital bill of a resident between the patient, the hospital and each
// fund — basic medical insurance (基本医保), critical illness insurance
// (大病保险), medical assistance (医疗救助), supplementary insurance
// (补充医疗保险) and the government backstop (政府兜底) — as fixed by
// /work/shared/settlement/SPEC.md.
//
// This part of the package is the pure engine: no database, no HTTP, no
// clock. It owns
//
//   - [Policy]: the figures of one year and region, parsed and validated from
//     a JSON policy file ([ParsePolicy], [LoadPolicyFile]); the reference
//     policy baokang-2019 ships embedded ([ReferencePolicy], [EmbeddedPolicy]).
//     No rate, threshold or cap lives in Go code.
//   - [Policy.Settle] and [Reverse]: one bill against one person's annual
//     [Accumulators], giving a [Result] (the split, the accumulator delta and a
//     bilingual [Trace] a billing clerk can read) and the new accumulators.
//   - [RunCases]: the conformance runner behind `qinba settle-cases`.
//
// Money is always [decimal.Decimal] (never float64), rounded half up to the
// fen exactly where SPEC.md says round2 and nowhere else. Validation problems
// are reported as [*ValidationError] values that name the offending field.
//
// The engine is safe for concurrent use: a *Policy is immutable once parsed.
// Choosing the policy in force for a bill's date and region, and keeping the
// accumulators per person and calendar year, is the caller's job.
package settlement
