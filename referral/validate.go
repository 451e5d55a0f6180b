package referral

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// Limits of a referral's content.
const (
	MaxSummary    = 4000 // characters of the clinical summary
	MaxDiagnoses  = 20
	MaxReason     = 1000 // characters of a decline/cancel reason or a note
	MaxCounter    = 4000 // characters of each counter-referral text
	MaxIdemKeyLen = 200
)

// icd10Re is an ICD-10 code: a letter, two digits, and optionally a dot and
// one to four letters or digits: "J18", "I63.9", "S72.001A".
var icd10Re = regexp.MustCompile(`^[A-Z][0-9]{2}(\.[A-Z0-9]{1,4})?$`)

var facilityCodeRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)

// ValidICD10 reports whether code is a well-formed ICD-10 code (upper case).
func ValidICD10(code string) bool { return icd10Re.MatchString(code) }

// CreateRequest is the body of POST /referrals. The sending doctor and
// facility come from the principal; the direction from the two tiers.
type CreateRequest struct {
	PersonID   int64    `json:"person_id"`
	ToFacility string   `json:"to_facility"`
	Urgency    Urgency  `json:"urgency"`
	Diagnoses  []string `json:"diagnoses"`
	Summary    string   `json:"summary"`
	ConsultID  *int64   `json:"consult_id,omitempty"`
}

// DecodeCreate decodes and validates a create body strictly; the result is
// normalised (codes upper-cased, text trimmed). Every error is an apperr
// Invalid error naming the field.
func DecodeCreate(body []byte) (CreateRequest, error) {
	var req CreateRequest
	if err := httpx.DecodeJSON(body, &req); err != nil {
		return CreateRequest{}, err
	}
	if err := req.Normalize(); err != nil {
		return CreateRequest{}, err
	}
	return req, nil
}

// Normalize cleans req in place and validates it.
func (req *CreateRequest) Normalize() error {
	f := apperr.Fields{}
	if req.PersonID <= 0 {
		f.Add("person_id", "required: the patient's person id")
	}
	req.ToFacility = strings.TrimSpace(req.ToFacility)
	if !facilityCodeRe.MatchString(req.ToFacility) {
		f.Add("to_facility", "required: a facility code")
	}
	if !req.Urgency.Valid() {
		f.Add("urgency", "must be emergency, urgent or routine")
	}
	switch {
	case len(req.Diagnoses) == 0:
		f.Add("diagnoses", "at least one ICD-10 code is required")
	case len(req.Diagnoses) > MaxDiagnoses:
		f.Add("diagnoses", "at most %d codes", MaxDiagnoses)
	default:
		seen := make(map[string]bool, len(req.Diagnoses))
		for i, d := range req.Diagnoses {
			d = strings.ToUpper(strings.TrimSpace(d))
			req.Diagnoses[i] = d
			switch {
			case !ValidICD10(d):
				f.Add("diagnoses", "code %d is not an ICD-10 code (letter, 2 digits, optional . and 1-4 letters or digits, e.g. I63.9)", i+1)
			case seen[d]:
				f.Add("diagnoses", "code %s is listed twice", d)
			}
			seen[d] = true
		}
	}
	req.Summary = strings.TrimSpace(req.Summary)
	checkText(f, "summary", req.Summary, MaxSummary, true)
	if req.ConsultID != nil && *req.ConsultID <= 0 {
		f.Add("consult_id", "must be a positive id")
	}
	return f.Err()
}

// checkText validates free text: printable (newlines and tabs allowed), at
// most max characters, present when required.
func checkText(f apperr.Fields, field, s string, max int, required bool) {
	switch {
	case required && s == "":
		f.Add(field, "required")
	case !utf8.ValidString(s):
		f.Add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		f.Add(field, "at most %d characters", max)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) >= 0:
		f.Add(field, "must not hold control characters")
	}
}

// ActionRequest is the body of POST /referrals/{id}/{action}. Version is the
// referral version the client saw (optimistic check); the other fields
// belong to particular actions and are refused on the others.
type ActionRequest struct {
	Version *int   `json:"version"`
	Reason  string `json:"reason,omitempty"` // decline (required), cancel
	Note    string `json:"note,omitempty"`   // any action
	// ScheduledFor is when the patient is expected (schedule only).
	ScheduledFor *time.Time `json:"scheduled_for,omitempty"`
	// CounterReferral is required on complete and refused elsewhere.
	CounterReferral *CounterReferral `json:"counter_referral,omitempty"`
}

// Validate checks req for action a and trims its text.
func (req *ActionRequest) Validate(a Action) error {
	f := apperr.Fields{}
	if req.Version == nil {
		f.Add("version", "required: the version of the referral you saw")
	} else if *req.Version <= 0 {
		f.Add("version", "must be positive")
	}
	req.Reason = strings.TrimSpace(req.Reason)
	req.Note = strings.TrimSpace(req.Note)
	switch a {
	case Decline:
		checkText(f, "reason", req.Reason, MaxReason, true)
	case Cancel:
		checkText(f, "reason", req.Reason, MaxReason, false)
	default:
		if req.Reason != "" {
			f.Add("reason", "only for decline and cancel")
		}
	}
	checkText(f, "note", req.Note, MaxReason, false)
	if a == Schedule {
		if req.ScheduledFor == nil || req.ScheduledFor.IsZero() {
			f.Add("scheduled_for", "required: when the patient is expected (RFC 3339)")
		} else if y := req.ScheduledFor.Year(); y < 2000 || y > 9999 {
			f.Add("scheduled_for", "out of range")
		}
	} else if req.ScheduledFor != nil {
		f.Add("scheduled_for", "only for schedule")
	}
	if a == Complete {
		if c := req.CounterReferral; c == nil {
			f.Add("counter_referral", "required: findings, treatment, advice, return_down")
		} else {
			c.Findings = strings.TrimSpace(c.Findings)
			c.Treatment = strings.TrimSpace(c.Treatment)
			c.Advice = strings.TrimSpace(c.Advice)
			checkText(f, "counter_referral.findings", c.Findings, MaxCounter, true)
			checkText(f, "counter_referral.treatment", c.Treatment, MaxCounter, false)
			checkText(f, "counter_referral.advice", c.Advice, MaxCounter, false)
		}
	} else if req.CounterReferral != nil {
		f.Add("counter_referral", "only for complete")
	}
	return f.Err()
}
