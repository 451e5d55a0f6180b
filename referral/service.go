package referral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Service is the referral capability: the rules around the Store. Every
// method takes the acting principal and checks it.
type Service struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	clock  Clock
	policy Policy
	store  Store
	scope  *auth.Scope
	hub    *Hub
}

// NewService builds the service on pool. A nil clock is the system clock.
// It returns an error when policy is invalid.
func NewService(pool *pgxpool.Pool, log *slog.Logger, policy Policy, clock Clock) (*Service, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{pool: pool, log: log, clock: clock, policy: policy, scope: &auth.Scope{DB: pool, Log: log}}
	s.hub = newHub(pool, log)
	return s, nil
}

// Hub is the service's stream fan-out; run it with Hub().Run.
func (s *Service) Hub() *Hub { return s.hub }

// Policy returns the service's policy.
func (s *Service) Policy() Policy { return s.policy }

// canCreate is the route-level rule for creating a referral.
var createRoles = []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor}

// viewRoles may read referrals (within their facility scope).
var viewRoles = []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleAdmin}

// VisibilityOf is what p may see: own facility, and an admin's region.
func VisibilityOf(p *auth.Principal) Visibility {
	if p == nil {
		return Visibility{}
	}
	v := Visibility{Facility: p.Facility}
	if p.Role == auth.RoleAdmin {
		v.Region = p.Region
	}
	return v
}

// bodyHash is the fingerprint of a create request stored with its
// Idempotency-Key.
func bodyHash(req CreateRequest) []byte {
	b, _ := json.Marshal(req)
	h := sha256.Sum256(b)
	return h[:]
}

// Create sends a new referral from p's facility. With a non-empty
// idemKey, a retry with the same key and body returns the first referral
// (created=false); the same key with another body is a Conflict.
func (s *Service) Create(ctx context.Context, p *auth.Principal, req CreateRequest, idemKey string) (r Referral, created bool, err error) {
	if !p.Has(createRoles...) {
		return Referral{}, false, apperr.E(apperr.Forbidden, "only doctors and village doctors send referrals")
	}
	if err := req.Normalize(); err != nil {
		return Referral{}, false, err
	}
	if len(idemKey) > MaxIdemKeyLen {
		return Referral{}, false, apperr.Field("Idempotency-Key", "at most %d characters", MaxIdemKeyLen)
	}
	fs := facility.NewStore(s.pool)
	fromChain, err := fs.Chain(ctx, p.Facility)
	if err != nil {
		return Referral{}, false, err
	}
	toChain, err := fs.Chain(ctx, req.ToFacility)
	if apperr.Is(err, apperr.NotFound) {
		return Referral{}, false, apperr.Field("to_facility", "no facility %q", req.ToFacility)
	} else if err != nil {
		return Referral{}, false, err
	}
	dir, ok := TargetAllowed(fromChain, toChain)
	if !ok {
		e := apperr.Field("to_facility", "a %s facility may not refer %s to %s %s", fromChain[0].Tier, dir, toChain[0].Tier, toChain[0].Code)
		e.Err = ErrTargetNotAllowed
		return Referral{}, false, e
	}
	// The patient must be one the sender may see (household's rule: a
	// person of a village at or below the sender's facility); otherwise
	// the referral would reveal a stranger's name. Unknown and invisible
	// answer alike.
	visible := false
	person, err := household.NewStore().GetPerson(ctx, s.pool, req.PersonID)
	switch {
	case err == nil:
		if visible, err = fs.IsAncestor(ctx, p.Facility, person.VillageCode); err != nil {
			return Referral{}, false, err
		}
	case !apperr.Is(err, apperr.NotFound):
		return Referral{}, false, err
	}
	if !visible {
		return Referral{}, false, apperr.Field("person_id", "no person %d among your facility's patients", req.PersonID)
	}
	hash := bodyHash(req)
	now := s.clock.Now()
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if idemKey != "" {
			tag, err := tx.Exec(ctx, `INSERT INTO referral_idempotency (user_id, key, body_sha256, created_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, key) DO NOTHING`, p.UserID, idemKey, hash, now)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				var prev []byte
				var id *int64
				if err := tx.QueryRow(ctx, `SELECT body_sha256, referral_id FROM referral_idempotency WHERE user_id = $1 AND key = $2`,
					p.UserID, idemKey).Scan(&prev, &id); err != nil {
					return err
				}
				if !bytes.Equal(prev, hash) || id == nil {
					return &apperr.Error{Code: apperr.Conflict, Message: "this Idempotency-Key was used for another request",
						Details: map[string]any{"idempotency_key": idemKey}}
				}
				r, err = s.store.Get(ctx, tx, *id)
				return err
			}
		}
		r, err = s.store.insert(ctx, tx, Referral{
			PersonID: req.PersonID, Direction: dir, Urgency: req.Urgency, FromFacility: p.Facility, ToFacility: req.ToFacility,
			SenderID: p.UserID, Diagnoses: req.Diagnoses, Summary: req.Summary, ConsultID: req.ConsultID,
			CreatedAt: now, DueAt: now.Add(s.policy.AcceptWithin[req.Urgency]),
		})
		if err != nil {
			if db.IsCode(err, db.CodeForeignKeyViolation) && db.ConstraintName(err) == "referral_person_id_fkey" {
				return apperr.Field("person_id", "no person %d", req.PersonID)
			}
			return err
		}
		created = true
		if idemKey != "" {
			if _, err := tx.Exec(ctx, `UPDATE referral_idempotency SET referral_id = $3 WHERE user_id = $1 AND key = $2`,
				p.UserID, idemKey, r.ID); err != nil {
				return err
			}
		}
		if err := auth.Audit(ctx, tx, auth.Entry{Action: "create", RecordType: "referral", RecordID: strconv.FormatInt(r.ID, 10),
			Facility: r.FromFacility, Detail: map[string]any{"to": r.ToFacility, "person_id": r.PersonID, "urgency": r.Urgency}}); err != nil {
			return err
		}
		_, err = s.store.appendEvent(ctx, tx, Event{ReferralID: r.ID, At: now, ActorID: p.UserID, Action: EventCreated,
			ToState: Sent, Detail: mustJSON(map[string]any{"direction": dir, "urgency": r.Urgency, "due_at": r.DueAt})},
			r.FromFacility, r.ToFacility)
		return err
	})
	if err != nil {
		return Referral{}, false, err
	}
	return r, created, nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// load returns referral id if p may see it; a NotFound (audited) otherwise.
func (s *Service) load(ctx context.Context, p *auth.Principal, id int64) (Referral, error) {
	r, err := s.store.Get(ctx, s.pool, id)
	if err != nil {
		return Referral{}, err
	}
	if err := s.scope.Check(ctx, p, auth.DenyNotFound, "referral", strconv.FormatInt(id, 10), r.FromFacility, r.ToFacility); err != nil {
		return Referral{}, err
	}
	return r, nil
}

// conflict is the 409 of a refused change, with the current state.
func conflict(r Referral, format string, args ...any) error {
	return &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf(format, args...),
		Details: map[string]any{"state": r.State, "version": r.Version}}
}

// mayAct reports whether p acts for side of r.
func mayAct(p *auth.Principal, r Referral, side Side) bool {
	switch side {
	case Receiver:
		return p.Role == auth.RoleDoctor && p.Facility == r.ToFacility
	case Sender:
		return p.Has(createRoles...) && p.Facility == r.FromFacility
	}
	return false
}

// Act applies action a to referral id for p: 404 when p may not see the
// referral, 403 when p may see it but not act for that end, 409 (with the
// current state and version) when the state machine or the version refuses.
func (s *Service) Act(ctx context.Context, p *auth.Principal, id int64, a Action, req ActionRequest) (Referral, error) {
	t, ok := TransitionOf(a)
	if !ok {
		return Referral{}, apperr.E(apperr.NotFound, "no action %q", a)
	}
	if err := req.Validate(a); err != nil {
		return Referral{}, err
	}
	r, err := s.load(ctx, p, id)
	if err != nil {
		return Referral{}, err
	}
	if !mayAct(p, r, t.By) {
		if t.By == Receiver {
			return Referral{}, s.deny(ctx, p, id, "not a doctor of the receiving facility",
				"only a doctor of the receiving facility may %s this referral", a)
		}
		return Referral{}, s.deny(ctx, p, id, "not the sending facility", "only the sending facility may %s this referral", a)
	}
	if r.State != t.From {
		return Referral{}, conflict(r, "a referral in state %s cannot be %s", r.State, pastTense(a))
	}
	if r.Version != *req.Version {
		return Referral{}, conflict(r, "the referral changed since you loaded it (now version %d)", r.Version)
	}
	now := s.clock.Now()
	detail := map[string]any{}
	if req.Reason != "" {
		detail["reason"] = req.Reason
	}
	if req.Note != "" {
		detail["note"] = req.Note
	}
	if req.ScheduledFor != nil {
		detail["scheduled_for"] = req.ScheduledFor
	}
	if req.CounterReferral != nil {
		detail["return_down"] = req.CounterReferral.ReturnDown
	}
	var out Referral
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var ok bool
		out, ok, err = s.store.transition(ctx, tx, change{id: id, version: *req.Version, from: t.From, to: t.To, at: now,
			actor: p.UserID, scheduled: req.ScheduledFor, counter: req.CounterReferral})
		if err != nil {
			return err
		}
		if !ok {
			cur, err := s.store.Get(ctx, tx, id)
			if err != nil {
				return err
			}
			return conflict(cur, "the referral changed since you loaded it (now %s, version %d)", cur.State, cur.Version)
		}
		if err := auth.Audit(ctx, tx, auth.Entry{Action: "update", RecordType: "referral", RecordID: strconv.FormatInt(id, 10),
			Facility: p.Facility, Detail: map[string]any{"action": a, "from": t.From, "to": t.To}}); err != nil {
			return err
		}
		var d json.RawMessage
		if len(detail) > 0 {
			d = mustJSON(detail)
		}
		_, err = s.store.appendEvent(ctx, tx, Event{ReferralID: id, At: now, ActorID: p.UserID, Action: string(a),
			FromState: t.From, ToState: t.To, Detail: d}, out.FromFacility, out.ToFacility)
		return err
	})
	return out, err
}

// deny logs and audits a refusal of p on referral id that p may see, and
// returns the 403.
func (s *Service) deny(ctx context.Context, p *auth.Principal, id int64, reason, format string, args ...any) error {
	s.log.WarnContext(ctx, "denied", "user", p.Username, "record_type", "referral", "record_id", id, "reason", reason)
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "deny", RecordType: "referral", RecordID: strconv.FormatInt(id, 10),
		Detail: map[string]any{"reason": reason}}); err != nil {
		return err
	}
	return apperr.E(apperr.Forbidden, format, args...)
}

func pastTense(a Action) string {
	switch a {
	case Accept:
		return "accepted"
	case Cancel:
		return "cancelled"
	}
	return string(a) + "d" // declined, scheduled, arrived, completed
}

// Get returns referral id with its history, counter-referral and
// attachments, if p may see it. The read is audited.
func (s *Service) Get(ctx context.Context, p *auth.Principal, id int64) (Detail, error) {
	r, err := s.load(ctx, p, id)
	if err != nil {
		return Detail{}, err
	}
	sum, err := s.store.Summary(ctx, s.pool, id)
	if err != nil {
		return Detail{}, err
	}
	evs, err := s.store.Events(ctx, s.pool, id)
	if err != nil {
		return Detail{}, err
	}
	atts, err := s.store.Attachments(ctx, s.pool, id)
	if err != nil {
		return Detail{}, err
	}
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "referral", RecordID: strconv.FormatInt(id, 10), Facility: p.Facility}); err != nil {
		return Detail{}, err
	}
	return Detail{Summary: sum, ReceiverID: r.ReceiverID, Clinical: r.Summary, ConsultID: r.ConsultID, AcceptedAt: r.AcceptedAt,
		ArrivedAt: r.ArrivedAt, ClosedAt: r.ClosedAt, Counter: r.Counter, Events: evs, Attachments: atts}, nil
}

// List returns the referrals p may see that f selects (Visibility is
// taken from p), and the stream cursor to resume from afterwards.
func (s *Service) List(ctx context.Context, p *auth.Principal, f ListFilter) ([]Summary, int64, error) {
	if !p.Has(viewRoles...) {
		return nil, 0, apperr.E(apperr.Forbidden, "your role may not read referrals")
	}
	f.Visibility = VisibilityOf(p)
	cursor, err := s.store.LastEventID(ctx, s.pool)
	if err != nil {
		return nil, 0, err
	}
	out, err := s.store.List(ctx, s.pool, f)
	if err != nil {
		return nil, 0, err
	}
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "referral", RecordID: "list", Facility: p.Facility,
		Detail: map[string]any{"box": f.Box, "state": f.State, "count": len(out)}}); err != nil {
		return nil, 0, err
	}
	return out, cursor, nil
}

// Notification is a message to one user.
type Notification struct {
	ID         int64           `json:"id"`
	UserID     int64           `json:"user_id"`
	At         time.Time       `json:"at"`
	Kind       string          `json:"kind"`
	ReferralID *int64          `json:"referral_id"`
	Body       json.RawMessage `json:"body"`
	Read       bool            `json:"read"`
}

// Notifications returns p's newest notifications (at most limit).
func (s *Service) Notifications(ctx context.Context, p *auth.Principal, limit int) ([]Notification, error) {
	if p == nil {
		return nil, apperr.E(apperr.Unauthenticated, "authentication required")
	}
	return s.store.Notifications(ctx, s.pool, p.UserID, 0, limit)
}
