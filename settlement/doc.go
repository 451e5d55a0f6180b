// Package settlement owns one-stop settlement (一站式结算): the rules that split
// a hospital bill of a resident between the patient, the hospital and each
// fund — basic medical insurance (基本医保), critical illness insurance
// (大病保险), medical assistance (医疗救助), supplementary insurance
// (补充医疗保险) and the government backstop (政府兜底) — as fixed by
// /work/shared/settlement/SPEC.md, and the service that applies them to the
// county's bills.
//
// # The engine
//
// The pure part: no database, no HTTP, no clock. It owns
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
// The engine is safe for concurrent use: a *Policy is immutable once parsed.
//
// # The service
//
// [Service] keeps the books on PostgreSQL (migration 0007; nothing else
// writes its tables):
//
//   - bills and their lines ([Service.CreateBill], [Service.ImportBills]: the
//     CSV of [BillCSVHeader], all or nothing, idempotent per facility and
//     external number);
//   - [Service.Settle]: the policy in force for the bill's date and its
//     facility's region ([Registry]), the person's category and insurance
//     for the year, their accumulators of the year (the row is locked:
//     settlements of one person serialise) and the referral's input (the
//     deductible of the referring stay comes from that stay's settlement),
//     written in one transaction with the engine's input and result, the
//     journal entry ([Chart], [JournalLines]) and the new accumulators
//     (requests that arrive together share that transaction: group.go);
//     Idempotency-Key retries get the first answer; [Service.Estimate] is the
//     same computation in a read-only transaction; [Service.Reverse] the
//     engine's reversal, the original kept; [Service.SettlePending] settles
//     every open bill (`qinba settle --pending`);
//   - the monthly clearing ([Service.RunClearing]), household statements
//     ([Service.HouseholdStatement], [HouseholdTotals]);
//   - [Verify]: the proof that the journal balances, agrees with the
//     settlements, and that replaying every settlement through the engine
//     gives the stored splits and accumulators (`qinba verify`).
//
// [Handler.Routes] serves it under /api/v1 (see openapi.json).
package settlement
