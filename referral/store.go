package referral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// ErrNotFound is wrapped by the apperr NotFound error for a missing referral.
var ErrNotFound = errors.New("referral not found")

// Store is the referral tables' SQL. Its zero value is ready; every method
// takes the pool or transaction to run on, so a referral change, its event
// and its audit entry commit together.
type Store struct{}

// The NOTIFY channels. Payloads are small JSON objects; listeners read the
// rows themselves.
const (
	ChannelEvent        = "qinba_referral"
	ChannelNotification = "qinba_notification"
)

// eventLock is the key of the transaction-scoped advisory lock taken just
// before every event insert: event ids are then assigned in commit order,
// which is what lets a stream resume "after id N" without gaps.
const eventLock int64 = 0x7172656665727231 // "qrefer r1"

const referralCols = `r.id, r.person_id, r.direction, r.state, r.version, r.urgency, r.from_facility, r.to_facility,
	r.sender_id, coalesce(r.receiver_id, 0), r.diagnoses, r.summary, r.consult_id, r.created_at, r.updated_at, r.due_at,
	r.accepted_at, r.scheduled_for, r.arrived_at, r.closed_at, r.overdue_at, r.counter_referral`

func scanReferral(row pgx.Row) (Referral, error) {
	var r Referral
	err := row.Scan(&r.ID, &r.PersonID, &r.Direction, &r.State, &r.Version, &r.Urgency, &r.FromFacility, &r.ToFacility,
		&r.SenderID, &r.ReceiverID, &r.Diagnoses, &r.Summary, &r.ConsultID, &r.CreatedAt, &r.UpdatedAt, &r.DueAt,
		&r.AcceptedAt, &r.ScheduledAt, &r.ArrivedAt, &r.ClosedAt, &r.OverdueAt, &r.Counter)
	return r, err
}

func notFound(id int64) error {
	return apperr.Wrap(apperr.NotFound, ErrNotFound, fmt.Sprintf("referral %d not found", id))
}

// Get returns referral id, or an apperr NotFound wrapping ErrNotFound. It
// does no authorisation: callers outside this package (settlement) check
// scope themselves.
func (Store) Get(ctx context.Context, d db.DBTX, id int64) (Referral, error) {
	r, err := scanReferral(d.QueryRow(ctx, `SELECT `+referralCols+` FROM referral r WHERE r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Referral{}, notFound(id)
	}
	return r, err
}

// ForPerson returns the referrals of a person, newest first (settlement
// looks for the one that brought a patient in).
func (Store) ForPerson(ctx context.Context, d db.DBTX, personID int64) ([]Referral, error) {
	rows, err := d.Query(ctx, `SELECT `+referralCols+` FROM referral r WHERE r.person_id = $1 ORDER BY r.created_at DESC, r.id DESC`, personID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Referral
	for rows.Next() {
		r, err := scanReferral(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// getForUpdate locks referral id for the rest of the transaction.
func (Store) getForUpdate(ctx context.Context, tx pgx.Tx, id int64) (Referral, error) {
	r, err := scanReferral(tx.QueryRow(ctx, `SELECT `+referralCols+` FROM referral r WHERE r.id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Referral{}, notFound(id)
	}
	return r, err
}

// insert stores a new referral in state sent.
func (Store) insert(ctx context.Context, d db.DBTX, r Referral) (Referral, error) {
	return scanReferral(d.QueryRow(ctx, `INSERT INTO referral AS r (person_id, direction, state, version, urgency, from_facility, to_facility,
			sender_id, diagnoses, summary, consult_id, created_at, updated_at, due_at)
		VALUES ($1, $2, 'sent', 1, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
		RETURNING `+referralCols,
		r.PersonID, r.Direction, r.Urgency, r.FromFacility, r.ToFacility, r.SenderID, r.Diagnoses, r.Summary, r.ConsultID,
		r.CreatedAt, r.DueAt))
}

// change is one state change to write.
type change struct {
	id        int64
	version   int // the version the client saw
	from, to  State
	at        time.Time
	actor     int64
	scheduled *time.Time
	counter   *CounterReferral
}

// transition applies c with the optimistic check (id, version and state
// must still match). ok is false when another change came first.
func (Store) transition(ctx context.Context, d db.DBTX, c change) (r Referral, ok bool, err error) {
	var counter []byte
	if c.counter != nil {
		if counter, err = json.Marshal(c.counter); err != nil {
			return Referral{}, false, err
		}
	}
	r, err = scanReferral(d.QueryRow(ctx, `UPDATE referral AS r SET
			state = $3, version = r.version + 1, updated_at = $4,
			receiver_id = CASE WHEN $3 IN ('accepted', 'declined') THEN $5 ELSE r.receiver_id END,
			accepted_at = CASE WHEN $3 = 'accepted' THEN $4 ELSE r.accepted_at END,
			arrived_at = CASE WHEN $3 = 'arrived' THEN $4 ELSE r.arrived_at END,
			closed_at = CASE WHEN $3 IN ('declined', 'cancelled', 'completed') THEN $4 ELSE r.closed_at END,
			scheduled_for = coalesce($6, r.scheduled_for),
			counter_referral = coalesce($7::jsonb, r.counter_referral)
		WHERE r.id = $1 AND r.version = $2 AND r.state = $8
		RETURNING `+referralCols,
		c.id, c.version, string(c.to), c.at, c.actor, c.scheduled, counter, string(c.from)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Referral{}, false, nil
	}
	return r, err == nil, err
}

// appendEvent writes e (ReferralID, At, ActorID, Action, FromState,
// ToState, Detail) as the referral's next event and NOTIFYs the listeners,
// in d's transaction. from and to are the facility codes for the payload.
// It must be the last lock a transaction takes (see eventLock).
func (Store) appendEvent(ctx context.Context, d db.DBTX, e Event, fromFacility, toFacility string) (Event, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, eventLock)
	var actor *int64
	if e.ActorID != 0 {
		actor = &e.ActorID
	}
	var fromState *string
	if e.FromState != "" {
		s := string(e.FromState)
		fromState = &s
	}
	var detail []byte
	if len(e.Detail) > 0 {
		detail = e.Detail
	}
	b.Queue(`WITH ins AS (
			INSERT INTO referral_event (referral_id, seq, at, actor_id, action, from_state, to_state, detail)
			VALUES ($1, (SELECT coalesce(max(seq), 0) + 1 FROM referral_event WHERE referral_id = $1), $2, $3, $4, $5, $6, $7::jsonb)
			RETURNING id, seq)
		SELECT ins.id, ins.seq, pg_notify($8, json_build_object('id', ins.id, 'referral_id', $1::bigint, 'from', $9::text, 'to', $10::text)::text)
		FROM ins`,
		e.ReferralID, e.At, actor, e.Action, fromState, string(e.ToState), detail, ChannelEvent, fromFacility, toFacility)
	br := d.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return Event{}, fmt.Errorf("event lock: %w", err)
	}
	if err := br.QueryRow().Scan(&e.ID, &e.Seq, nil); err != nil {
		return Event{}, fmt.Errorf("insert event: %w", err)
	}
	return e, br.Close()
}

const eventCols = `e.id, e.referral_id, e.seq, e.at, coalesce(e.actor_id, 0), e.action, coalesce(e.from_state, ''), e.to_state, e.detail`

func scanEvent(row pgx.Row, e *Event, more ...any) error {
	var detail []byte
	dest := append([]any{&e.ID, &e.ReferralID, &e.Seq, &e.At, &e.ActorID, &e.Action, &e.FromState, &e.ToState, &detail}, more...)
	if err := row.Scan(dest...); err != nil {
		return err
	}
	if len(detail) > 0 {
		e.Detail = json.RawMessage(detail)
	}
	return nil
}

// Events returns referral id's history, oldest first.
func (Store) Events(ctx context.Context, d db.DBTX, id int64) ([]Event, error) {
	rows, err := d.Query(ctx, `SELECT `+eventCols+` FROM referral_event e WHERE e.referral_id = $1 ORDER BY e.seq`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		if err := scanEvent(rows, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// summaryFrom joins what a Summary shows. The patient's name comes from
// household's person table; the identity number is masked before it
// leaves this package.
const summaryFrom = ` FROM referral r
	JOIN facility ff ON ff.code = r.from_facility
	JOIN facility tf ON tf.code = r.to_facility
	LEFT JOIN person p ON p.id = r.person_id`

const summaryCols = `r.id, r.direction, r.state, r.version, r.urgency, r.person_id, coalesce(p.name, ''), coalesce(p.national_id, ''),
	ff.code, ff.name, ff.tier, ff.region_code, tf.code, tf.name, tf.tier, tf.region_code,
	r.sender_id, r.diagnoses, r.created_at, r.updated_at, r.due_at, r.scheduled_for, r.overdue_at`

func summaryDest(s *Summary, nationalID *string) []any {
	return []any{&s.ID, &s.Direction, &s.State, &s.Version, &s.Urgency, &s.Patient.PersonID, &s.Patient.Name, nationalID,
		&s.From.Code, &s.From.Name, &s.From.Tier, &s.From.Region, &s.To.Code, &s.To.Name, &s.To.Tier, &s.To.Region,
		&s.SenderID, &s.Diagnoses, &s.CreatedAt, &s.UpdatedAt, &s.DueAt, &s.ScheduledAt, &s.OverdueAt}
}

func finishSummary(s *Summary, nationalID string) {
	s.Patient.NationalIDMasked = household.MaskID(nationalID)
	s.Overdue = s.OverdueAt != nil
	if s.Diagnoses == nil {
		s.Diagnoses = []string{}
	}
}

// Visibility is which referrals a reader may see: those with either end at
// Facility, and (admins) those with either end in Region. Empty fields
// grant nothing; the zero value sees nothing and All sees everything.
type Visibility struct {
	Facility string
	Region   string
	All      bool
}

// visSQL is the visibility predicate over r, ff, tf with the facility,
// region and all flag as parameters $n, $n+1, $n+2.
func visSQL(n int) string {
	return fmt.Sprintf(`($%[3]d OR ($%[1]d <> '' AND (r.from_facility = $%[1]d OR r.to_facility = $%[1]d))
		OR ($%[2]d <> '' AND (ff.region_code = $%[2]d OR tf.region_code = $%[2]d)))`, n, n+1, n+2)
}

// Summary returns the summary of referral id.
func (Store) Summary(ctx context.Context, d db.DBTX, id int64) (Summary, error) {
	var s Summary
	var nid string
	err := d.QueryRow(ctx, `SELECT `+summaryCols+summaryFrom+` WHERE r.id = $1`, id).Scan(summaryDest(&s, &nid)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Summary{}, notFound(id)
	}
	finishSummary(&s, nid)
	return s, err
}

// ListFilter narrows List.
type ListFilter struct {
	Visibility
	// Box is "inbox" (received), "outbox" (sent) or "" for both.
	Box   string
	State State
	Limit int
}

// List returns the summaries f selects, most recently changed first.
func (Store) List(ctx context.Context, d db.DBTX, f ListFilter) ([]Summary, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := d.Query(ctx, `SELECT `+summaryCols+summaryFrom+`
		WHERE CASE $4
			WHEN 'inbox' THEN ($1 <> '' AND r.to_facility = $1) OR ($2 <> '' AND tf.region_code = $2) OR $3
			WHEN 'outbox' THEN ($1 <> '' AND r.from_facility = $1) OR ($2 <> '' AND ff.region_code = $2) OR $3
			ELSE `+visSQL(1)+` END
		  AND ($5 = '' OR r.state = $5)
		ORDER BY r.updated_at DESC, r.id DESC
		LIMIT $6`, f.Facility, f.Region, f.All, f.Box, string(f.State), f.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Summary{}
	for rows.Next() {
		var s Summary
		var nid string
		if err := rows.Scan(summaryDest(&s, &nid)...); err != nil {
			return nil, err
		}
		finishSummary(&s, nid)
		out = append(out, s)
	}
	return out, rows.Err()
}

// LastEventID is the newest event id (0 when there is none): a stream
// cursor to resume from after loading a list.
func (Store) LastEventID(ctx context.Context, d db.DBTX) (int64, error) {
	var id int64
	err := d.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM referral_event`).Scan(&id)
	return id, err
}

// StreamItem is one event with the summary of its referral, as the stream
// sends it.
type StreamItem struct {
	Event    Event   `json:"event"`
	Referral Summary `json:"referral"`
}

// EventsAfter returns up to limit events with id > after that v may see,
// oldest first, each with its referral's current summary.
func (Store) EventsAfter(ctx context.Context, d db.DBTX, after int64, v Visibility, limit int) ([]StreamItem, error) {
	rows, err := d.Query(ctx, `SELECT `+eventCols+`, `+summaryCols+summaryFrom+`
		JOIN referral_event e ON e.referral_id = r.id
		WHERE e.id > $4 AND `+visSQL(1)+`
		ORDER BY e.id
		LIMIT $5`, v.Facility, v.Region, v.All, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StreamItem
	for rows.Next() {
		var it StreamItem
		var nid string
		if err := scanEvent(rows, &it.Event, summaryDest(&it.Referral, &nid)...); err != nil {
			return nil, err
		}
		finishSummary(&it.Referral, nid)
		out = append(out, it)
	}
	return out, rows.Err()
}
