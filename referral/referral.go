package referral

import (
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/qinba/qinba/facility"
)

// State is where a referral stands.
type State string

// The states of a referral. Declined, cancelled and completed are final.
const (
	Sent      State = "sent"
	Accepted  State = "accepted"
	Declined  State = "declined"
	Cancelled State = "cancelled"
	Scheduled State = "scheduled"
	Arrived   State = "arrived"
	Completed State = "completed"
)

// States lists every state in the order of the happy path, then the final
// refusals.
var States = []State{Sent, Accepted, Scheduled, Arrived, Completed, Declined, Cancelled}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Final reports whether no action can leave s.
func (s State) Final() bool { return s == Declined || s == Cancelled || s == Completed }

// Action is what a user does to a referral (the last segment of
// POST /referrals/{id}/{action}).
type Action string

// The actions on a referral.
const (
	Accept   Action = "accept"
	Decline  Action = "decline"
	Cancel   Action = "cancel"
	Schedule Action = "schedule"
	Arrive   Action = "arrive"
	Complete Action = "complete"
)

// Actions lists every action a user can take.
var Actions = []Action{Accept, Decline, Cancel, Schedule, Arrive, Complete}

// Side is which end of a referral may take an action.
type Side string

// The two ends of a referral.
const (
	Sender   Side = "sender"   // the sending facility
	Receiver Side = "receiver" // the receiving facility
)

// Transition is one allowed move of the state machine.
type Transition struct {
	From, To State
	By       Side
}

// transitions is the whole state machine: nothing else is allowed.
var transitions = map[Action]Transition{
	Accept:   {From: Sent, To: Accepted, By: Receiver},
	Decline:  {From: Sent, To: Declined, By: Receiver},
	Cancel:   {From: Sent, To: Cancelled, By: Sender},
	Schedule: {From: Accepted, To: Scheduled, By: Receiver},
	Arrive:   {From: Scheduled, To: Arrived, By: Receiver},
	Complete: {From: Arrived, To: Completed, By: Receiver},
}

// TransitionOf returns the rule of action a, false for an unknown action.
func TransitionOf(a Action) (Transition, bool) {
	t, ok := transitions[a]
	return t, ok
}

// Next returns the state action a leads to from s, and false when the state
// machine does not allow a in s.
func Next(s State, a Action) (State, bool) {
	t, ok := transitions[a]
	if !ok || t.From != s {
		return "", false
	}
	return t.To, true
}

// Urgency sets how soon the receiving facility must accept.
type Urgency string

// The urgencies, most pressing first.
const (
	Emergency Urgency = "emergency"
	Urgent    Urgency = "urgent"
	Routine   Urgency = "routine"
)

// Urgencies lists every urgency.
var Urgencies = []Urgency{Emergency, Urgent, Routine}

// Valid reports whether u is a known urgency.
func (u Urgency) Valid() bool { return slices.Contains(Urgencies, u) }

// Direction is derived from the tiers of the two facilities, never typed.
type Direction string

// The directions of a referral.
const (
	Up      Direction = "up"      // to a higher tier
	Down    Direction = "down"    // to a lower tier
	Lateral Direction = "lateral" // within a tier
)

// DirectionOf derives the direction of a referral from tier from to tier to.
func DirectionOf(from, to facility.Tier) Direction {
	switch {
	case to.Higher(from):
		return Up
	case from.Higher(to):
		return Down
	}
	return Lateral
}

// ErrTargetNotAllowed is wrapped by the error when the target facility may
// not receive a referral from the sending facility.
var ErrTargetNotAllowed = errors.New("target facility not allowed")

// TargetAllowed reports whether from may refer to to. fromChain is from
// and its ancestors, bottom up (facility.Store.Chain); toChain likewise.
//
//   - up: to one of the sender's ancestors, or to any facility of a higher
//     tier in the sender's region, or to a city facility;
//   - down: to a facility below the sender, or of a lower tier in the
//     sender's region; a city facility may refer down anywhere;
//   - lateral: to a facility of the same tier in the same region or under
//     the same parent.
func TargetAllowed(fromChain, toChain []facility.Facility) (Direction, bool) {
	if len(fromChain) == 0 || len(toChain) == 0 {
		return "", false
	}
	from, to := fromChain[0], toChain[0]
	if from.Code == to.Code {
		return "", false
	}
	dir := DirectionOf(from.Tier, to.Tier)
	sameRegion := from.RegionCode == to.RegionCode
	switch dir {
	case Up:
		if to.Tier == facility.City || sameRegion {
			return dir, true
		}
		return dir, slices.ContainsFunc(fromChain[1:], func(f facility.Facility) bool { return f.Code == to.Code })
	case Down:
		if from.Tier == facility.City || sameRegion {
			return dir, true
		}
		return dir, slices.ContainsFunc(toChain[1:], func(f facility.Facility) bool { return f.Code == from.Code })
	default:
		return dir, sameRegion || (from.ParentCode != "" && from.ParentCode == to.ParentCode)
	}
}

// CounterReferral is what the receiving doctor writes back on completion;
// the sending doctor reads it to close the loop.
type CounterReferral struct {
	Findings  string `json:"findings"`
	Treatment string `json:"treatment"`
	Advice    string `json:"advice"`
	// ReturnDown says whether the patient goes back down to the sending
	// facility for follow-up.
	ReturnDown bool `json:"return_down"`
}

// Referral is one referral as stored. It never holds a patient's identity
// number.
type Referral struct {
	ID        int64     `json:"id"`
	PersonID  int64     `json:"person_id"`
	Direction Direction `json:"direction"`
	State     State     `json:"state"`
	Version   int       `json:"version"`
	Urgency   Urgency   `json:"urgency"`
	// FromFacility is the sending facility's code, ToFacility the
	// receiving one's.
	FromFacility string `json:"from_facility"`
	ToFacility   string `json:"to_facility"`
	// SenderID is the sending doctor's user id; ReceiverID the doctor who
	// accepted or declined (0 until then).
	SenderID    int64            `json:"sender_id"`
	ReceiverID  int64            `json:"receiver_id,omitempty"`
	Diagnoses   []string         `json:"diagnoses"`
	Summary     string           `json:"summary"`
	ConsultID   *int64           `json:"consult_id"`
	CreatedAt   time.Time        `json:"created_at"`
	UpdatedAt   time.Time        `json:"updated_at"`
	DueAt       time.Time        `json:"due_at"`
	AcceptedAt  *time.Time       `json:"accepted_at"`
	ScheduledAt *time.Time       `json:"scheduled_for"`
	ArrivedAt   *time.Time       `json:"arrived_at"`
	ClosedAt    *time.Time       `json:"closed_at"`
	OverdueAt   *time.Time       `json:"overdue_at"`
	Counter     *CounterReferral `json:"counter_referral"`
}

// Event is one entry of a referral's append-only history.
type Event struct {
	ID         int64           `json:"id"`
	ReferralID int64           `json:"referral_id"`
	Seq        int             `json:"seq"`
	At         time.Time       `json:"at"`
	ActorID    int64           `json:"actor_id,omitempty"` // 0: the system (escalation)
	Action     string          `json:"action"`
	FromState  State           `json:"from_state,omitempty"`
	ToState    State           `json:"to_state"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// Event actions beyond the user Actions.
const (
	EventCreated    = "created"
	EventEscalated  = "escalated"
	EventAttachment = "attachment"
)

// FacilityRef names a facility in referral JSON.
type FacilityRef struct {
	Code   string        `json:"code"`
	Name   string        `json:"name"`
	Tier   facility.Tier `json:"tier"`
	Region string        `json:"region_code"`
}

// Patient names the patient in referral JSON: never the full identity
// number.
type Patient struct {
	PersonID         int64  `json:"person_id"`
	Name             string `json:"name"`
	NationalIDMasked string `json:"national_id_masked,omitempty"`
}

// Summary is a referral as lists and the stream show it: no clinical text.
type Summary struct {
	ID          int64       `json:"id"`
	Direction   Direction   `json:"direction"`
	State       State       `json:"state"`
	Version     int         `json:"version"`
	Urgency     Urgency     `json:"urgency"`
	Patient     Patient     `json:"patient"`
	From        FacilityRef `json:"from_facility"`
	To          FacilityRef `json:"to_facility"`
	SenderID    int64       `json:"sender_id"`
	Diagnoses   []string    `json:"diagnoses"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	DueAt       time.Time   `json:"due_at"`
	ScheduledAt *time.Time  `json:"scheduled_for"`
	OverdueAt   *time.Time  `json:"overdue_at"`
	Overdue     bool        `json:"overdue"`
}

// Attachment describes a stored file (its bytes are fetched separately).
type Attachment struct {
	ID          int64     `json:"id"`
	ReferralID  int64     `json:"referral_id"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"content_type"`
	Size        int       `json:"size"`
	SHA256      string    `json:"sha256"`
	UploadedBy  int64     `json:"uploaded_by"`
	CreatedAt   time.Time `json:"created_at"`
}

// Detail is GET /referrals/{id}: the referral, its parties, its history and
// its attachments.
type Detail struct {
	Summary
	ReceiverID  int64            `json:"receiver_id,omitempty"`
	Clinical    string           `json:"summary"`
	ConsultID   *int64           `json:"consult_id"`
	AcceptedAt  *time.Time       `json:"accepted_at"`
	ArrivedAt   *time.Time       `json:"arrived_at"`
	ClosedAt    *time.Time       `json:"closed_at"`
	Counter     *CounterReferral `json:"counter_referral"`
	Events      []Event          `json:"events"`
	Attachments []Attachment     `json:"attachments"`
}
