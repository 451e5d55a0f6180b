// Package referral owns the movement of a patient between facilities: the
// referral record and its state machine (sent → accepted → scheduled →
// arrived → completed, or declined / cancelled), the append-only event log
// of every change, attachments (images and PDFs kept in PostgreSQL), the
// counter-referral written on completion, the deadline escalation of
// referrals nobody accepts, the notifications it raises, the live inbox
// stream (Server-Sent Events fed by PostgreSQL LISTEN/NOTIFY) and the
// county's referral statistics.
//
// Nothing else writes the referral, referral_event, referral_attachment,
// referral_idempotency or notification tables. Other capabilities read a
// referral through Store.Get (settlement finds the referring stay from
// PersonID and FromFacility; consult links itself through ConsultID).
//
// Ordering of events: every event insert takes one transaction-scoped
// advisory lock just before it and NOTIFYs in the same transaction, so
// event ids are assigned in commit order. A stream client that resumes from
// the last event id it saw therefore never misses an event and never gets
// one twice, across reconnects and across server instances.
package referral
