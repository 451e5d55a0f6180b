package consult

// Consult records: the consult a village or township doctor requests for a
// patient from a facility higher up, its states (requested → live → ended,
// or requested → cancelled), who joined its room, the consulting doctor's
// notes and advice, recording consents and files, and the fee line of an
// ended consult. The media layer (SFU) tells the records what happens in a
// room through Service.Hooks.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/referral"
	"github.com/qinba/qinba/settlement"
)

// State is a consult's state.
type State string

// The states of a consult.
const (
	Requested State = "requested" // waiting for the first participant
	Live      State = "live"      // someone joined the room
	Ended     State = "ended"     // ended by a participant; a fee line exists
	Cancelled State = "cancelled" // called off before it went live
)

// Limits of a consult's text fields (characters).
const (
	MaxReason     = 2000
	MaxNotes      = 8000
	MaxIdemKeyLen = 200
)

// FacilityRef names a facility in a consult.
type FacilityRef struct {
	Code string        `json:"code"`
	Name string        `json:"name"`
	Tier facility.Tier `json:"tier"`
}

// PatientRef names the patient of a consult.
type PatientRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Participant is a user who joined the consult's room.
type Participant struct {
	UserID        int64      `json:"user_id"`
	Username      string     `json:"username"`
	FirstJoinedAt time.Time  `json:"first_joined_at"`
	LastJoinedAt  time.Time  `json:"last_joined_at"`
	LeftAt        *time.Time `json:"left_at"`
	// Consented is when the participant consented to recording.
	Consented *time.Time `json:"consented_at"`
}

// Consult is a consult record.
type Consult struct {
	ID           int64       `json:"id"`
	State        State       `json:"state"`
	PersonID     int64       `json:"person_id"`
	Patient      PatientRef  `json:"patient"`
	RequesterID  int64       `json:"requester_id"`
	Requester    string      `json:"requester"`
	FromFacility FacilityRef `json:"from_facility"`
	ToFacility   FacilityRef `json:"to_facility"`
	ToUserID     *int64      `json:"to_user_id"`
	Reason       string      `json:"reason"`
	ScheduledAt  *time.Time  `json:"scheduled_at"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
	StartedAt    *time.Time  `json:"started_at"`
	EndedAt      *time.Time  `json:"ended_at"`
	EndedBy      *int64      `json:"ended_by"`
	Notes        string      `json:"notes"`
	Advice       string      `json:"advice"`
	NotesBy      *int64      `json:"notes_by"`
	NotesAt      *time.Time  `json:"notes_at"`
	// Participants is filled by Get (nil in lists).
	Participants []Participant `json:"participants,omitempty"`
}

// CreateRequest is the body of POST /consults. Give to_facility, to_user_id
// (a doctor there), or both.
type CreateRequest struct {
	PersonID    int64      `json:"person_id"`
	ToFacility  string     `json:"to_facility,omitempty"`
	ToUserID    *int64     `json:"to_user_id,omitempty"`
	Reason      string     `json:"reason"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
}

// NotesRequest is the body of PUT /consults/{id}/notes.
type NotesRequest struct {
	Notes  string `json:"notes"`
	Advice string `json:"advice"`
}

// ReferralRequest is the body of POST /consults/{id}/referral: what the
// consult cannot prefill. The patient, the target facility (the consult's
// addressed facility unless to_facility is given) and consult_id come from
// the consult; the summary defaults to the reason and the advice.
type ReferralRequest struct {
	ToFacility string           `json:"to_facility,omitempty"`
	Urgency    referral.Urgency `json:"urgency"`
	Diagnoses  []string         `json:"diagnoses"`
	Summary    string           `json:"summary,omitempty"`
}

// ReferralCreator creates referrals (referral.Service).
type ReferralCreator interface {
	Create(ctx context.Context, p *auth.Principal, req referral.CreateRequest, idemKey string) (referral.Referral, bool, error)
}

// Rooms is what the records need of the media server (*SFU).
type Rooms interface {
	CloseRoom(consultID string) error
	Participants(consultID string) []ParticipantInfo
	StartRecording(consultID string) error
	StopRecording(consultID string) ([]RecordingFile, error)
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Pool *pgxpool.Pool
	Log  *slog.Logger
	// Fees prices ended consults; the embedded fees.json if nil.
	Fees *FeeTable
	// Referrals opens referrals from consults; POST /consults/{id}/referral
	// answers 503 when nil.
	Referrals ReferralCreator
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Service owns the consult records. It is safe for concurrent use.
type Service struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	scope     *auth.Scope
	fees      *FeeTable
	referrals ReferralCreator
	now       func() time.Time
	rooms     Rooms
}

// NewService returns a Service. Call SetRooms before serving.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Pool == nil {
		return nil, errors.New("consult: ServiceConfig.Pool is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Fees == nil {
		f, err := ParseFees(DefaultFeesJSON)
		if err != nil {
			return nil, err
		}
		cfg.Fees = f
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{pool: cfg.Pool, log: cfg.Log, scope: &auth.Scope{DB: cfg.Pool, Log: cfg.Log},
		fees: cfg.Fees, referrals: cfg.Referrals, now: cfg.Now}, nil
}

// SetRooms connects the records to the media server (the SFU is built
// with the service's Hooks, so it comes second).
func (s *Service) SetRooms(r Rooms) { s.rooms = r }

// RoomID is the SFU room id of a consult.
func RoomID(id int64) string { return strconv.FormatInt(id, 10) }

const consultColumns = `c.id, c.state, c.person_id, p.name, c.requester_id, u.username,
	c.from_facility, ff.name, ff.tier, c.to_facility, tf.name, tf.tier, c.to_user_id, c.reason, c.scheduled_at,
	c.created_at, c.updated_at, c.started_at, c.ended_at, c.ended_by, c.notes, c.advice, c.notes_by, c.notes_at`

const consultFrom = ` FROM consult c
	JOIN person p ON p.id = c.person_id
	JOIN app_user u ON u.id = c.requester_id
	JOIN facility ff ON ff.code = c.from_facility
	JOIN facility tf ON tf.code = c.to_facility`

func scanConsults(rows pgx.Rows) ([]Consult, error) {
	defer rows.Close()
	var out []Consult
	for rows.Next() {
		var c Consult
		if err := rows.Scan(&c.ID, &c.State, &c.PersonID, &c.Patient.Name, &c.RequesterID, &c.Requester,
			&c.FromFacility.Code, &c.FromFacility.Name, &c.FromFacility.Tier, &c.ToFacility.Code, &c.ToFacility.Name, &c.ToFacility.Tier,
			&c.ToUserID, &c.Reason, &c.ScheduledAt, &c.CreatedAt, &c.UpdatedAt, &c.StartedAt, &c.EndedAt, &c.EndedBy,
			&c.Notes, &c.Advice, &c.NotesBy, &c.NotesAt); err != nil {
			return nil, err
		}
		c.Patient.ID = c.PersonID
		out = append(out, c)
	}
	return out, rows.Err()
}

// load reads a consult without any access check; lock takes a row lock.
func load(ctx context.Context, d db.DBTX, id int64, lock bool) (Consult, error) {
	q := `SELECT ` + consultColumns + consultFrom + ` WHERE c.id = $1`
	if lock {
		q += ` FOR UPDATE OF c`
	}
	rows, err := d.Query(ctx, q, id)
	if err != nil {
		return Consult{}, err
	}
	cs, err := scanConsults(rows)
	if err != nil {
		return Consult{}, err
	}
	if len(cs) == 0 {
		return Consult{}, apperr.E(apperr.NotFound, "consult not found")
	}
	return cs[0], nil
}

// visible loads a consult p may see (either end's facility, or an admin's
// region); anything else is a 404, audited.
func (s *Service) visible(ctx context.Context, p *auth.Principal, id int64) (Consult, error) {
	c, err := load(ctx, s.pool, id, false)
	if apperr.Is(err, apperr.NotFound) {
		// Unknown and invisible answer alike, and both are audited.
		return Consult{}, s.scope.Check(ctx, p, auth.DenyNotFound, "consult", strconv.FormatInt(id, 10), auth.NoFacility)
	}
	if err != nil {
		return Consult{}, err
	}
	if err := s.scope.Check(ctx, p, auth.DenyNotFound, "consult", strconv.FormatInt(id, 10), c.FromFacility.Code, c.ToFacility.Code); err != nil {
		return Consult{}, err
	}
	return c, nil
}

// CanJoin reports whether p may be in the consult's room: its requester,
// and the doctors of the addressed facility (only the named one when the
// consult names a doctor).
func (c *Consult) CanJoin(p *auth.Principal) bool {
	if p.UserID == c.RequesterID {
		return true
	}
	return p.Role == auth.RoleDoctor && p.Facility == c.ToFacility.Code && (c.ToUserID == nil || *c.ToUserID == p.UserID)
}

// isConsultant reports whether p is a doctor of the addressed facility.
func (c *Consult) isConsultant(p *auth.Principal) bool {
	return p.Role == auth.RoleDoctor && p.Facility == c.ToFacility.Code
}

// deny audits and returns a 403 for a visible consult p may not act on.
func (s *Service) deny(ctx context.Context, p *auth.Principal, c Consult, why string) error {
	s.log.WarnContext(ctx, "denied", "user", p.Username, "record_type", "consult", "record_id", c.ID, "reason", why)
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "deny", RecordType: "consult", RecordID: strconv.FormatInt(c.ID, 10),
		Facility: c.ToFacility.Code, Detail: map[string]any{"reason": why}}); err != nil {
		s.log.ErrorContext(ctx, "audit denial", "err", err)
	}
	return apperr.E(apperr.Forbidden, "%s", why)
}

func stateConflict(c Consult, format string, args ...any) error {
	e := apperr.E(apperr.Conflict, format, args...)
	e.Details = map[string]any{"state": c.State}
	return e
}

// Normalize trims and checks a create request.
func (r *CreateRequest) Normalize(now time.Time) error {
	f := apperr.Fields{}
	r.ToFacility = strings.TrimSpace(r.ToFacility)
	r.Reason = strings.TrimSpace(r.Reason)
	if r.PersonID <= 0 {
		f.Add("person_id", "required")
	}
	if r.ToFacility == "" && r.ToUserID == nil {
		f.Add("to_facility", "give to_facility or to_user_id")
	}
	if r.ToUserID != nil && *r.ToUserID <= 0 {
		f.Add("to_user_id", "must be a positive id")
	}
	if n := utf8.RuneCountInString(r.Reason); n == 0 || n > MaxReason {
		f.Add("reason", "1 to %d characters", MaxReason)
	}
	if r.ScheduledAt != nil {
		switch at := *r.ScheduledAt; {
		case at.Before(now.Add(-5 * time.Minute)):
			f.Add("scheduled_at", "in the past")
		case at.After(now.AddDate(0, 0, 90)):
			f.Add("scheduled_at", "more than 90 days ahead")
		}
	}
	return f.Err()
}

// Create records a consult requested by p (a village doctor or a doctor)
// for a patient p may see, addressed to a facility of a higher tier or a
// named doctor there. With a non-empty idemKey, a retry with the same key
// and body returns the first consult (created=false); the same key with
// another body is a Conflict.
func (s *Service) Create(ctx context.Context, p *auth.Principal, req CreateRequest, idemKey string) (c Consult, created bool, err error) {
	if !p.Has(auth.RoleVillageDoctor, auth.RoleDoctor) {
		return Consult{}, false, apperr.E(apperr.Forbidden, "only doctors and village doctors request consults")
	}
	now := s.now()
	if err := req.Normalize(now); err != nil {
		return Consult{}, false, err
	}
	if len(idemKey) > MaxIdemKeyLen {
		return Consult{}, false, apperr.Field("Idempotency-Key", "at most %d characters", MaxIdemKeyLen)
	}
	body, _ := json.Marshal(req)
	sum := sha256.Sum256(body)
	if idemKey != "" {
		if c, ok, err := s.replay(ctx, p, idemKey, sum[:]); ok || err != nil {
			return c, false, err
		}
	}
	// The addressee: a named doctor decides the facility.
	if req.ToUserID != nil {
		var role, fac string
		var disabled bool
		err := s.pool.QueryRow(ctx, `SELECT role, facility_code, disabled FROM app_user WHERE id = $1`, *req.ToUserID).Scan(&role, &fac, &disabled)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && (role != string(auth.RoleDoctor) || disabled) {
			return Consult{}, false, apperr.Field("to_user_id", "no doctor %d", *req.ToUserID)
		} else if err != nil {
			return Consult{}, false, err
		}
		if req.ToFacility != "" && req.ToFacility != fac {
			return Consult{}, false, apperr.Field("to_user_id", "doctor %d does not work at %s", *req.ToUserID, req.ToFacility)
		}
		req.ToFacility = fac
	}
	fs := facility.NewStore(s.pool)
	to, err := fs.Get(ctx, req.ToFacility)
	if apperr.Is(err, apperr.NotFound) {
		return Consult{}, false, apperr.Field("to_facility", "no facility %q", req.ToFacility)
	} else if err != nil {
		return Consult{}, false, err
	}
	if !to.Tier.Higher(facility.Tier(p.Tier)) {
		return Consult{}, false, apperr.Field("to_facility", "a %s facility may only ask a facility of a higher tier, not %s %s", p.Tier, to.Tier, to.Code)
	}
	// The patient: household's rule (a person of a village at or below
	// p's facility, or an admin's region); unknown and invisible alike.
	person, err := household.NewStore().GetPerson(ctx, s.pool, req.PersonID)
	if apperr.Is(err, apperr.NotFound) {
		return Consult{}, false, s.scope.Check(ctx, p, auth.DenyNotFound, "person", strconv.FormatInt(req.PersonID, 10), auth.NoFacility)
	} else if err != nil {
		return Consult{}, false, err
	}
	chain, err := fs.Chain(ctx, person.VillageCode)
	if err != nil {
		return Consult{}, false, err
	}
	codes := make([]string, len(chain))
	for i, f := range chain {
		codes[i] = f.Code
	}
	if err := s.scope.Check(ctx, p, auth.DenyNotFound, "person", strconv.FormatInt(req.PersonID, 10), codes...); err != nil {
		return Consult{}, false, err
	}

	var id int64
	errReplay := errors.New("replay")
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO consult (person_id, requester_id, from_facility, to_facility, to_user_id, reason, scheduled_at, state, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', $8, $8) RETURNING id`,
			req.PersonID, p.UserID, p.Facility, to.Code, req.ToUserID, req.Reason, req.ScheduledAt, now).Scan(&id); err != nil {
			return err
		}
		if idemKey != "" {
			tag, err := tx.Exec(ctx, `INSERT INTO consult_idempotency (user_id, key, body_sha256, consult_id) VALUES ($1, $2, $3, $4)
				ON CONFLICT DO NOTHING`, p.UserID, idemKey, sum[:], id)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return errReplay // a concurrent request with the key won
			}
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: "create", RecordType: "consult", RecordID: strconv.FormatInt(id, 10),
			Facility: p.Facility, Detail: map[string]any{"person_id": req.PersonID, "to_facility": to.Code}})
	})
	if errors.Is(err, errReplay) {
		c, _, err := s.replay(ctx, p, idemKey, sum[:])
		return c, false, err
	}
	if err != nil {
		return Consult{}, false, err
	}
	c, err = load(ctx, s.pool, id, false)
	return c, true, err
}

// replay returns the consult an idempotency key created, if any.
func (s *Service) replay(ctx context.Context, p *auth.Principal, key string, sum []byte) (Consult, bool, error) {
	var prev []byte
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT body_sha256, consult_id FROM consult_idempotency WHERE user_id = $1 AND key = $2`, p.UserID, key).Scan(&prev, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Consult{}, false, nil
	} else if err != nil {
		return Consult{}, false, err
	}
	if string(prev) != string(sum) {
		return Consult{}, true, apperr.E(apperr.Conflict, "Idempotency-Key %q was used with another body", key)
	}
	c, err := load(ctx, s.pool, id, false)
	return c, true, err
}

// Get returns a consult p may see, with its participants; the read is
// audited.
func (s *Service) Get(ctx context.Context, p *auth.Principal, id int64) (Consult, error) {
	c, err := s.visible(ctx, p, id)
	if err != nil {
		return Consult{}, err
	}
	rows, err := s.pool.Query(ctx, `SELECT cp.user_id, u.username, cp.first_joined_at, cp.last_joined_at, cp.left_at, cc.consented_at
		FROM consult_participant cp JOIN app_user u ON u.id = cp.user_id
		LEFT JOIN consult_consent cc ON cc.consult_id = cp.consult_id AND cc.user_id = cp.user_id
		WHERE cp.consult_id = $1 ORDER BY cp.first_joined_at, cp.user_id`, id)
	if err != nil {
		return Consult{}, err
	}
	defer rows.Close()
	c.Participants = []Participant{}
	for rows.Next() {
		var pt Participant
		if err := rows.Scan(&pt.UserID, &pt.Username, &pt.FirstJoinedAt, &pt.LastJoinedAt, &pt.LeftAt, &pt.Consented); err != nil {
			return Consult{}, err
		}
		c.Participants = append(c.Participants, pt)
	}
	if err := rows.Err(); err != nil {
		return Consult{}, err
	}
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "consult", RecordID: strconv.FormatInt(id, 10),
		Facility: c.ToFacility.Code, Detail: map[string]any{"person_id": c.PersonID}}); err != nil {
		return Consult{}, err
	}
	return c, nil
}

// List returns the consults p may see, newest first: box "incoming"
// (addressed to p's facility, or an admin's region), "outgoing" (requested
// from it) or "" (both).
func (s *Service) List(ctx context.Context, p *auth.Principal, box string, limit int) ([]Consult, error) {
	fac, region := auth.ScopeFilter(p)
	var cond string
	switch box {
	case "incoming":
		cond = `(($1 <> '' AND c.to_facility = $1) OR ($2 <> '' AND tf.region_code = $2))`
	case "outgoing":
		cond = `(($1 <> '' AND c.from_facility = $1) OR ($2 <> '' AND ff.region_code = $2))`
	case "":
		cond = `(($1 <> '' AND (c.to_facility = $1 OR c.from_facility = $1)) OR ($2 <> '' AND (tf.region_code = $2 OR ff.region_code = $2)))`
	default:
		return nil, apperr.Field("box", "incoming or outgoing")
	}
	rows, err := s.pool.Query(ctx, `SELECT `+consultColumns+consultFrom+` WHERE `+cond+` ORDER BY c.created_at DESC, c.id DESC LIMIT $3`, fac, region, limit)
	if err != nil {
		return nil, err
	}
	cs, err := scanConsults(rows)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		cs = []Consult{}
	}
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "list", RecordType: "consult", RecordID: box, Facility: p.Facility,
		Detail: map[string]any{"count": len(cs)}}); err != nil {
		return nil, err
	}
	return cs, nil
}

// JoinCheck returns the consult if p may have a room token for it now:
// p may join (CanJoin) and the consult is requested or live.
func (s *Service) JoinCheck(ctx context.Context, p *auth.Principal, id int64) (Consult, error) {
	c, err := s.visible(ctx, p, id)
	if err != nil {
		return Consult{}, err
	}
	if !c.CanJoin(p) {
		return Consult{}, s.deny(ctx, p, c, "only the requester and the addressed doctors join a consult")
	}
	if c.State != Requested && c.State != Live {
		return Consult{}, stateConflict(c, "the consult is %s", c.State)
	}
	return c, nil
}

// transition changes a consult p may act on (CanJoin) from one of from to
// to; fn, if set, runs in the same transaction.
func (s *Service) transition(ctx context.Context, p *auth.Principal, id int64, action string, to State, from []State,
	fn func(tx pgx.Tx, c *Consult, now time.Time) error) (Consult, error) {
	c, err := s.visible(ctx, p, id)
	if err != nil {
		return Consult{}, err
	}
	if !c.CanJoin(p) {
		return Consult{}, s.deny(ctx, p, c, "only the requester and the addressed doctors may "+action+" a consult")
	}
	now := s.now()
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := load(ctx, tx, id, true)
		if err != nil {
			return err
		}
		ok := false
		for _, st := range from {
			ok = ok || cur.State == st
		}
		if !ok {
			return stateConflict(cur, "cannot %s a %s consult", action, cur.State)
		}
		if _, err := tx.Exec(ctx, `UPDATE consult SET state = $2, updated_at = $3, ended_at = $3, ended_by = $4 WHERE id = $1`,
			id, to, now, p.UserID); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(tx, &cur, now); err != nil {
				return err
			}
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: action, RecordType: "consult", RecordID: strconv.FormatInt(id, 10),
			Facility: cur.ToFacility.Code, Detail: map[string]any{"from": cur.State, "to": to}})
	})
	if err != nil {
		return Consult{}, err
	}
	if s.rooms != nil {
		if err := s.rooms.CloseRoom(RoomID(id)); err != nil && !errors.Is(err, ErrNoRoom) {
			s.log.WarnContext(ctx, "close consult room", "consult", id, "err", err)
		}
	}
	return load(ctx, s.pool, id, false)
}

// Cancel calls off a consult that has not gone live.
func (s *Service) Cancel(ctx context.Context, p *auth.Principal, id int64) (Consult, error) {
	return s.transition(ctx, p, id, "cancel", Cancelled, []State{Requested}, nil)
}

// End ends a live consult: its room is closed and its fee line written,
// priced from the fee table by the two facilities' tiers.
func (s *Service) End(ctx context.Context, p *auth.Principal, id int64) (Consult, error) {
	return s.transition(ctx, p, id, "end", Ended, []State{Live}, func(tx pgx.Tx, c *Consult, now time.Time) error {
		fee, ok := s.fees.Lookup(c.FromFacility.Tier, c.ToFacility.Tier)
		if !ok {
			// The consult still ends; billing has nothing to add.
			s.log.WarnContext(ctx, "no consult fee", "consult", id, "from_tier", c.FromFacility.Tier, "to_tier", c.ToFacility.Tier, "fee_table", s.fees.Version)
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO consult_fee (consult_id, person_id, facility_code, item_code, item_name, class, quantity, unit_price, amount, fee_table, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8, $9)`,
			id, c.PersonID, c.ToFacility.Code, fee.ItemCode, fee.Name, fee.Class, fee.price, s.fees.Version, now)
		return err
	})
}

// SetNotes writes the consulting doctor's notes and advice: a doctor of the
// addressed facility, while the consult is live or after it ended.
func (s *Service) SetNotes(ctx context.Context, p *auth.Principal, id int64, req NotesRequest) (Consult, error) {
	f := apperr.Fields{}
	req.Notes, req.Advice = strings.TrimSpace(req.Notes), strings.TrimSpace(req.Advice)
	if utf8.RuneCountInString(req.Notes) > MaxNotes {
		f.Add("notes", "at most %d characters", MaxNotes)
	}
	if utf8.RuneCountInString(req.Advice) > MaxNotes {
		f.Add("advice", "at most %d characters", MaxNotes)
	}
	if err := f.Err(); err != nil {
		return Consult{}, err
	}
	c, err := s.visible(ctx, p, id)
	if err != nil {
		return Consult{}, err
	}
	if !c.isConsultant(p) {
		return Consult{}, s.deny(ctx, p, c, "only a doctor of the addressed facility writes the consult's notes")
	}
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := load(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if cur.State != Live && cur.State != Ended {
			return stateConflict(cur, "notes are written once the consult is live, not while it is %s", cur.State)
		}
		if _, err := tx.Exec(ctx, `UPDATE consult SET notes = $2, advice = $3, notes_by = $4, notes_at = $5, updated_at = $5 WHERE id = $1`,
			id, req.Notes, req.Advice, p.UserID, s.now()); err != nil {
			return err
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: "update", RecordType: "consult", RecordID: strconv.FormatInt(id, 10),
			Facility: cur.ToFacility.Code, Detail: map[string]any{"field": "notes"}})
	})
	if err != nil {
		return Consult{}, err
	}
	return load(ctx, s.pool, id, false)
}

// Fee returns the fee line of an ended consult p may see.
func (s *Service) Fee(ctx context.Context, p *auth.Principal, id int64) (FeeLine, error) {
	if _, err := s.visible(ctx, p, id); err != nil {
		return FeeLine{}, err
	}
	var l FeeLine
	var qty, unit, amount decimal.Decimal
	err := s.pool.QueryRow(ctx, `SELECT consult_id, person_id, facility_code, item_code, item_name, class, quantity, unit_price, amount, fee_table, created_at
		FROM consult_fee WHERE consult_id = $1`, id).Scan(&l.ConsultID, &l.PersonID, &l.Facility, &l.ItemCode, &l.Name, &l.Class,
		&qty, &unit, &amount, &l.FeeTable, &l.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return FeeLine{}, apperr.E(apperr.NotFound, "consult %d has no fee line (it has not ended)", id)
	} else if err != nil {
		return FeeLine{}, err
	}
	l.Quantity = qty.String()
	l.UnitPrice = settlement.FormatMoney(unit)
	l.Amount = settlement.FormatMoney(amount)
	return l, nil
}

// OpenReferral opens a referral from a live or ended consult, as its
// requester's facility: the patient, target facility and consult_id come
// from the consult.
func (s *Service) OpenReferral(ctx context.Context, p *auth.Principal, id int64, req ReferralRequest, idemKey string) (referral.Referral, bool, error) {
	if s.referrals == nil {
		return referral.Referral{}, false, apperr.E(apperr.Unavailable, "referrals are not wired")
	}
	c, err := s.visible(ctx, p, id)
	if err != nil {
		return referral.Referral{}, false, err
	}
	if p.Facility != c.FromFacility.Code {
		return referral.Referral{}, false, s.deny(ctx, p, c, "a referral from a consult is sent by the requesting facility")
	}
	if c.State != Live && c.State != Ended {
		return referral.Referral{}, false, stateConflict(c, "a %s consult cannot open a referral", c.State)
	}
	cr := ReferralDraft(c, req)
	return s.referrals.Create(ctx, p, cr, idemKey)
}

// ReferralDraft is the referral a consult prefills (POST /referrals body).
func ReferralDraft(c Consult, req ReferralRequest) referral.CreateRequest {
	to := req.ToFacility
	if to == "" {
		to = c.ToFacility.Code
	}
	summary := strings.TrimSpace(req.Summary)
	if summary == "" {
		summary = c.Reason
		if c.Advice != "" {
			summary += "\n\n会诊意见：" + c.Advice
		}
		if r := []rune(summary); len(r) > referral.MaxSummary {
			summary = string(r[:referral.MaxSummary])
		}
	}
	id := c.ID
	return referral.CreateRequest{PersonID: c.PersonID, ToFacility: to, Urgency: req.Urgency, Diagnoses: req.Diagnoses,
		Summary: summary, ConsultID: &id}
}
