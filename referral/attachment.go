package referral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// The attachment types a referral accepts, told by content, never by name.
var attachmentTypes = map[string]string{
	"image/jpeg":      ".jpg",
	"image/png":       ".png",
	"application/pdf": ".pdf",
}

// DetectType returns the content type of data when it is a JPEG, PNG or
// PDF (by its magic bytes), else "".
func DetectType(data []byte) string {
	ct := http.DetectContentType(data)
	if _, ok := attachmentTypes[ct]; !ok {
		return ""
	}
	// DetectContentType sniffs these three by their signatures; check the
	// exact magic as well, so the rule does not depend on its heuristics.
	switch {
	case ct == "image/jpeg" && bytes.HasPrefix(data, []byte{0xFF, 0xD8, 0xFF}):
	case ct == "image/png" && bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
	case ct == "application/pdf" && bytes.HasPrefix(data, []byte("%PDF-")):
	default:
		return ""
	}
	return ct
}

// cleanFilename keeps a display name safe for Content-Disposition: the base
// name, no control characters, quotes or separators, at most 200
// characters; empty becomes "attachment" with the type's extension.
func cleanFilename(name, contentType string) string {
	name = strings.ReplaceAll(name, `\`, "/")
	name = path.Base(name)
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '"' || r == '/' || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if r := []rune(name); len(r) > 200 {
		name = string(r[len(r)-200:])
	}
	if name == "" || name == "." || name == ".." {
		name = "attachment" + attachmentTypes[contentType]
	}
	return name
}

// AddAttachment stores data as an attachment of referral id. p must work at
// either end (a doctor or village doctor); the type is told from the bytes
// (JPEG, PNG or PDF, else Unsupported), the size is limited by the policy.
func (s *Service) AddAttachment(ctx context.Context, p *auth.Principal, id int64, filename string, data []byte) (Attachment, error) {
	r, err := s.load(ctx, p, id)
	if err != nil {
		return Attachment{}, err
	}
	if !p.Has(createRoles...) || (p.Facility != r.FromFacility && p.Facility != r.ToFacility) {
		return Attachment{}, s.deny(ctx, p, id, "not a doctor of either facility", "only doctors of the two facilities may attach files")
	}
	if len(data) == 0 {
		return Attachment{}, apperr.Field("file", "the file is empty")
	}
	if len(data) > s.policy.MaxAttachment {
		return Attachment{}, apperr.E(apperr.TooLarge, "an attachment may have at most %d bytes", s.policy.MaxAttachment)
	}
	ct := DetectType(data)
	if ct == "" {
		return Attachment{}, apperr.E(apperr.Unsupported, "attachments must be JPEG, PNG or PDF (told by content, not by name)")
	}
	sum := sha256.Sum256(data)
	a := Attachment{ReferralID: id, Filename: cleanFilename(filename, ct), ContentType: ct, Size: len(data),
		SHA256: hex.EncodeToString(sum[:]), UploadedBy: p.UserID, CreatedAt: s.clock.Now()}
	err = db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := s.store.getForUpdate(ctx, tx, id)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM referral_attachment WHERE referral_id = $1`, id).Scan(&n); err != nil {
			return err
		}
		if n >= s.policy.MaxAttachments {
			return &apperr.Error{Code: apperr.Conflict, Message: "this referral has as many attachments as allowed",
				Details: map[string]any{"attachments": n}}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO referral_attachment (referral_id, filename, content_type, size, sha256, data, uploaded_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			id, a.Filename, a.ContentType, a.Size, sum[:], data, a.UploadedBy, a.CreatedAt).Scan(&a.ID); err != nil {
			return err
		}
		if err := auth.Audit(ctx, tx, auth.Entry{Action: "create", RecordType: "referral_attachment", RecordID: strconv.FormatInt(a.ID, 10),
			Facility: p.Facility, Detail: map[string]any{"referral_id": id, "content_type": ct, "size": a.Size}}); err != nil {
			return err
		}
		_, err = s.store.appendEvent(ctx, tx, Event{ReferralID: id, At: a.CreatedAt, ActorID: p.UserID, Action: EventAttachment,
			FromState: cur.State, ToState: cur.State, Detail: mustJSON(map[string]any{"attachment_id": a.ID, "content_type": ct, "size": a.Size})},
			cur.FromFacility, cur.ToFacility)
		return err
	})
	return a, err
}

// Attachment returns attachment aid of referral id and its bytes, if p may
// see the referral. The read is audited.
func (s *Service) Attachment(ctx context.Context, p *auth.Principal, id, aid int64) (Attachment, []byte, error) {
	if !p.Has(viewRoles...) {
		return Attachment{}, nil, apperr.E(apperr.Forbidden, "your role may not read referrals")
	}
	if _, err := s.load(ctx, p, id); err != nil {
		return Attachment{}, nil, err
	}
	var a Attachment
	var sum, data []byte
	err := s.pool.QueryRow(ctx, `SELECT id, referral_id, filename, content_type, size, sha256, uploaded_by, created_at, data
		FROM referral_attachment WHERE id = $1 AND referral_id = $2`, aid, id).
		Scan(&a.ID, &a.ReferralID, &a.Filename, &a.ContentType, &a.Size, &sum, &a.UploadedBy, &a.CreatedAt, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return Attachment{}, nil, apperr.E(apperr.NotFound, "attachment %d not found", aid)
	}
	if err != nil {
		return Attachment{}, nil, err
	}
	a.SHA256 = hex.EncodeToString(sum)
	if err := auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "referral_attachment", RecordID: strconv.FormatInt(aid, 10),
		Facility: p.Facility, Detail: map[string]any{"referral_id": id}}); err != nil {
		return Attachment{}, nil, err
	}
	return a, data, nil
}

// Attachments lists the attachments of referral id (without their bytes).
func (Store) Attachments(ctx context.Context, d db.DBTX, id int64) ([]Attachment, error) {
	rows, err := d.Query(ctx, `SELECT id, referral_id, filename, content_type, size, sha256, uploaded_by, created_at
		FROM referral_attachment WHERE referral_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Attachment{}
	for rows.Next() {
		var a Attachment
		var sum []byte
		if err := rows.Scan(&a.ID, &a.ReferralID, &a.Filename, &a.ContentType, &a.Size, &sum, &a.UploadedBy, &a.CreatedAt); err != nil {
			return nil, err
		}
		a.SHA256 = hex.EncodeToString(sum)
		out = append(out, a)
	}
	return out, rows.Err()
}
