package consult

// How the records follow the media server's rooms (RoomHooks), recording
// consent and recorded files.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// hookTimeout bounds the database work of one room hook.
const hookTimeout = 10 * time.Second

// Hooks returns the RoomHooks that keep the records in step with the SFU.
// A room's participant id is the user's username (the room token's
// subject, see HTTP token issue).
func (s *Service) Hooks() RoomHooks {
	return RoomHooks{
		Admit:       s.admit,
		OnJoin:      s.onJoin,
		OnLeave:     s.onLeave,
		OnRecording: s.onRecording,
	}
}

func parseRoomID(consultID string) (int64, bool) {
	id, err := strconv.ParseInt(consultID, 10, 64)
	return id, err == nil && id > 0
}

// principalOf builds the principal of an enabled user by username.
func (s *Service) principalOf(ctx context.Context, username string) (*auth.Principal, error) {
	p := &auth.Principal{Username: username}
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.role, u.facility_code, f.tier FROM app_user u JOIN facility f ON f.code = u.facility_code
		WHERE u.username = $1 AND NOT u.disabled`, username).Scan(&p.UserID, &p.Role, &p.Facility, &p.Tier)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apperr.E(apperr.Forbidden, "unknown or disabled user")
	}
	return p, err
}

// admit refuses a room token whose consult has ended or been cancelled, or
// whose user may no longer join (disabled, moved to another facility).
func (s *Service) admit(ctx context.Context, consultID, username string) error {
	id, ok := parseRoomID(consultID)
	if !ok {
		return apperr.E(apperr.NotFound, "consult not found")
	}
	p, err := s.principalOf(ctx, username)
	if err != nil {
		return err
	}
	c, err := load(ctx, s.pool, id, false)
	if err != nil {
		return err
	}
	if !c.CanJoin(p) {
		return apperr.E(apperr.Forbidden, "you may not join this consult")
	}
	if c.State != Requested && c.State != Live {
		return stateConflict(c, "the consult is %s", c.State)
	}
	return nil
}

// onJoin records the participant and makes the consult live on its first
// join. If the room is being recorded and the newcomer has not consented,
// the recording stops (consent must be everyone's).
func (s *Service) onJoin(consultID, username string) {
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	id, ok := parseRoomID(consultID)
	if !ok {
		return
	}
	var consented bool
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var uid int64
		if err := tx.QueryRow(ctx, `SELECT id FROM app_user WHERE username = $1`, username).Scan(&uid); err != nil {
			return err
		}
		now := s.now()
		if _, err := tx.Exec(ctx, `INSERT INTO consult_participant (consult_id, user_id, first_joined_at, last_joined_at) VALUES ($1, $2, $3, $3)
			ON CONFLICT (consult_id, user_id) DO UPDATE SET last_joined_at = $3, left_at = NULL, joins = consult_participant.joins + 1`,
			id, uid, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE consult SET state = 'live', started_at = $2, updated_at = $2 WHERE id = $1 AND state = 'requested'`, id, now); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM consult_consent WHERE consult_id = $1 AND user_id = $2)`, id, uid).Scan(&consented)
	})
	if err != nil {
		s.log.Error("consult join", "consult", consultID, "user", username, "err", err)
		return
	}
	if !consented && s.rooms != nil {
		if _, err := s.rooms.StopRecording(consultID); err == nil {
			s.log.Info("consult recording stopped: a participant without consent joined", "consult", consultID, "user", username)
		}
	}
}

func (s *Service) onLeave(consultID, username string, reason LeaveReason) {
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	id, ok := parseRoomID(consultID)
	if !ok {
		return
	}
	if _, err := s.pool.Exec(ctx, `UPDATE consult_participant cp SET left_at = $3 FROM app_user u
		WHERE cp.consult_id = $1 AND u.id = cp.user_id AND u.username = $2`, id, username, s.now()); err != nil {
		s.log.Error("consult leave", "consult", consultID, "user", username, "reason", reason, "err", err)
	}
}

func (s *Service) onRecording(consultID string, files []RecordingFile) {
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	id, ok := parseRoomID(consultID)
	if !ok {
		return
	}
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		for _, f := range files {
			if _, err := tx.Exec(ctx, `INSERT INTO consult_recording (consult_id, user_id, kind, mime_type, path, started_at, ended_at, frames, dropped, error)
				VALUES ($1, (SELECT id FROM app_user WHERE username = $2), $3, $4, $5, $6, $7, $8, $9, $10)`,
				id, f.UserID, f.Kind, f.MimeType, f.Path, f.StartedAt, f.EndedAt, f.Frames, f.Dropped, f.Error); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("consult recording files", "consult", consultID, "files", len(files), "err", err)
	}
}

// ConsentResult is the answer of POST /consults/{id}/recording.
type ConsentResult struct {
	ConsentedAt time.Time `json:"consented_at"`
	// Recording is whether the room is now being recorded: only once every
	// current participant has consented.
	Recording bool `json:"recording"`
	// Waiting lists the participants (usernames) whose consent is missing.
	Waiting []string `json:"waiting"`
}

// Consent records p's consent to recording a live consult p may join, and
// starts recording the room when every participant in it has consented.
func (s *Service) Consent(ctx context.Context, p *auth.Principal, id int64) (ConsentResult, error) {
	c, err := s.JoinCheck(ctx, p, id)
	if err != nil {
		return ConsentResult{}, err
	}
	if c.State != Live {
		return ConsentResult{}, stateConflict(c, "recording needs a live consult")
	}
	var res ConsentResult
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO consult_consent (consult_id, user_id, consented_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			id, p.UserID, s.now()); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT consented_at FROM consult_consent WHERE consult_id = $1 AND user_id = $2`, id, p.UserID).Scan(&res.ConsentedAt); err != nil {
			return err
		}
		return auth.Audit(ctx, tx, auth.Entry{Action: "consent", RecordType: "consult", RecordID: strconv.FormatInt(id, 10),
			Facility: c.ToFacility.Code, Detail: map[string]any{"what": "recording"}})
	})
	if err != nil {
		return ConsentResult{}, err
	}
	if s.rooms == nil {
		return res, nil
	}
	in := s.rooms.Participants(RoomID(id))
	names := make([]string, len(in))
	for i, pi := range in {
		names[i] = pi.UserID
	}
	rows, err := s.pool.Query(ctx, `SELECT u.username FROM consult_consent cc JOIN app_user u ON u.id = cc.user_id
		WHERE cc.consult_id = $1 AND u.username = ANY($2)`, id, names)
	if err != nil {
		return ConsentResult{}, err
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return ConsentResult{}, err
	}
	ok := map[string]bool{}
	for _, n := range have {
		ok[n] = true
	}
	res.Waiting = []string{}
	for _, n := range names {
		if !ok[n] {
			res.Waiting = append(res.Waiting, n)
		}
	}
	if len(names) > 0 && len(res.Waiting) == 0 {
		switch err := s.rooms.StartRecording(RoomID(id)); {
		case err == nil:
			res.Recording = true
		case errors.Is(err, ErrRecordingDisabled):
			return ConsentResult{}, apperr.E(apperr.Unavailable, "recording is not configured on this server")
		case errors.Is(err, ErrNoRoom):
		default:
			return ConsentResult{}, err
		}
	}
	return res, nil
}

// Recording is a recorded track of a consult.
type Recording struct {
	ID        int64     `json:"id"`
	UserID    *int64    `json:"user_id"`
	Kind      string    `json:"kind"`
	MimeType  string    `json:"mime_type"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	Frames    int64     `json:"frames"`
	Dropped   int64     `json:"dropped"`
	Error     string    `json:"error,omitempty"`
	// Size is the file's size in bytes (0 if it is gone).
	Size int64 `json:"size"`

	path string
}

// participantCheck loads a consult p may see and checks that p took part
// in it (joined its room).
func (s *Service) participantCheck(ctx context.Context, p *auth.Principal, id int64) (Consult, error) {
	c, err := s.visible(ctx, p, id)
	if err != nil {
		return Consult{}, err
	}
	var in bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM consult_participant WHERE consult_id = $1 AND user_id = $2)`, id, p.UserID).Scan(&in); err != nil {
		return Consult{}, err
	}
	if !in {
		return Consult{}, s.deny(ctx, p, c, "only the consult's participants have its recordings")
	}
	return c, nil
}

// Recordings lists a consult's recorded tracks, for its participants.
func (s *Service) Recordings(ctx context.Context, p *auth.Principal, id int64) ([]Recording, error) {
	if _, err := s.participantCheck(ctx, p, id); err != nil {
		return nil, err
	}
	return s.recordings(ctx, id, 0)
}

func (s *Service) recordings(ctx context.Context, id, rid int64) ([]Recording, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, user_id, kind, mime_type, started_at, ended_at, frames, dropped, error, path
		FROM consult_recording WHERE consult_id = $1 AND ($2 = 0 OR id = $2) ORDER BY id`, id, rid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Recording{}
	for rows.Next() {
		var r Recording
		if err := rows.Scan(&r.ID, &r.UserID, &r.Kind, &r.MimeType, &r.StartedAt, &r.EndedAt, &r.Frames, &r.Dropped, &r.Error, &r.path); err != nil {
			return nil, err
		}
		if st, err := os.Stat(r.path); err == nil {
			r.Size = st.Size()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordingFile returns the path and content type of one recorded track,
// for a participant; the download is audited.
func (s *Service) RecordingPath(ctx context.Context, p *auth.Principal, id, rid int64, recordDir string) (path, contentType string, err error) {
	c, err := s.participantCheck(ctx, p, id)
	if err != nil {
		return "", "", err
	}
	rs, err := s.recordings(ctx, id, rid)
	if err != nil {
		return "", "", err
	}
	if len(rs) == 0 {
		return "", "", apperr.E(apperr.NotFound, "recording not found")
	}
	r := rs[0]
	// The SFU wrote it under recordDir; refuse anything else.
	abs, err := filepath.Abs(r.path)
	root, err2 := filepath.Abs(recordDir)
	if err != nil || err2 != nil || recordDir == "" || !strings.HasPrefix(abs, root+string(filepath.Separator)) {
		return "", "", apperr.E(apperr.NotFound, "recording file not found")
	}
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "consult_recording", RecordID: strconv.FormatInt(rid, 10),
		Facility: c.ToFacility.Code, Detail: map[string]any{"consult_id": id}}); err != nil {
		return "", "", err
	}
	contentType = "audio/ogg"
	if r.Kind == "video" {
		contentType = "video/x-ivf"
	}
	return abs, contentType, nil
}
