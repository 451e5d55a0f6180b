package referral

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/internal/db"
)

// NotificationOverdue is the kind of the notification an escalation raises.
const NotificationOverdue = "referral_overdue"

// escalateBatch is how many overdue referrals one transaction escalates.
const escalateBatch = 100

// Escalate marks every referral still waiting past its deadline as overdue:
// it sets overdue_at, appends an "escalated" event and notifies the admins
// of the two facilities' regions and the doctors of the facility above the
// receiving one. It returns how many referrals it escalated.
//
// It is safe to run on several servers at once (rows are claimed with
// FOR UPDATE SKIP LOCKED) and idempotent (a referral escalates once; its
// state lives in the database, so a restart loses nothing).
func (s *Service) Escalate(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.escalateBatch(ctx, s.clock.Now())
		total += n
		if err != nil || n < escalateBatch {
			return total, err
		}
	}
}

type overdue struct {
	id        int64
	from, to  FacilityRef
	toParent  string
	urgency   Urgency
	state     State
	dueAt     time.Time
	createdAt time.Time
}

func (s *Service) escalateBatch(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := db.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT r.id, r.urgency, r.state, r.due_at, r.created_at,
				ff.code, ff.name, ff.tier, ff.region_code, tf.code, tf.name, tf.tier, tf.region_code, coalesce(tf.parent_code, '')
			FROM referral r
			JOIN facility ff ON ff.code = r.from_facility
			JOIN facility tf ON tf.code = r.to_facility
			WHERE r.state = 'sent' AND r.overdue_at IS NULL AND r.due_at <= $1
			ORDER BY r.due_at, r.id
			LIMIT $2
			FOR UPDATE OF r SKIP LOCKED`, now, escalateBatch)
		if err != nil {
			return err
		}
		var list []overdue
		for rows.Next() {
			var o overdue
			if err := rows.Scan(&o.id, &o.urgency, &o.state, &o.dueAt, &o.createdAt,
				&o.from.Code, &o.from.Name, &o.from.Tier, &o.from.Region, &o.to.Code, &o.to.Name, &o.to.Tier, &o.to.Region, &o.toParent); err != nil {
				rows.Close()
				return err
			}
			list = append(list, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Row locks first, for every referral of the batch; the event
		// lock (appendEvent) last.
		for _, o := range list {
			if _, err := tx.Exec(ctx, `UPDATE referral SET overdue_at = $2, updated_at = $2 WHERE id = $1`, o.id, now); err != nil {
				return err
			}
		}
		for _, o := range list {
			body := mustJSON(map[string]any{
				"referral_id": o.id, "urgency": o.urgency, "from_facility": o.from, "to_facility": o.to,
				"due_at": o.dueAt, "overdue_at": now,
				"message": fmt.Sprintf("%s referral %d from %s to %s not accepted since %s", o.urgency, o.id, o.from.Name, o.to.Name,
					o.createdAt.Format(time.RFC3339)),
			})
			users, err := s.store.notifyOverdue(ctx, tx, o, now, body)
			if err != nil {
				return err
			}
			if _, err := s.store.appendEvent(ctx, tx, Event{ReferralID: o.id, At: now, Action: EventEscalated, FromState: o.state, ToState: o.state,
				Detail: mustJSON(map[string]any{"due_at": o.dueAt, "notified_users": users, "next_up": o.toParent})}, o.from.Code, o.to.Code); err != nil {
				return err
			}
		}
		n = len(list)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.log.InfoContext(ctx, "referrals escalated", "count", n)
	}
	return n, nil
}

// notifyOverdue raises one notification per user to tell (at most once per
// referral) and NOTIFYs the listeners; it returns how many users it told.
func (Store) notifyOverdue(ctx context.Context, tx pgx.Tx, o overdue, now time.Time, body json.RawMessage) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `WITH ins AS (
			INSERT INTO notification (user_id, at, kind, referral_id, body)
			SELECT u.id, $1, $2, $3, $4::jsonb
			FROM app_user u JOIN facility f ON f.code = u.facility_code
			WHERE NOT u.disabled
			  AND ((u.role = 'admin' AND f.region_code IN ($5, $6)) OR (u.role = 'doctor' AND u.facility_code = $7))
			ON CONFLICT (user_id, kind, referral_id) DO NOTHING
			RETURNING id, user_id)
		SELECT count(pg_notify($8, json_build_object('id', id, 'user_id', user_id)::text)) FROM ins`,
		now, NotificationOverdue, o.id, body, o.from.Region, o.to.Region, o.toParent, ChannelNotification).Scan(&n)
	return n, err
}

// Notifications returns user's notifications with id > after, newest
// first, at most limit.
func (Store) Notifications(ctx context.Context, d db.DBTX, user, after int64, limit int) ([]Notification, error) {
	if limit <= 0 {
		limit = 50
	}
	rows, err := d.Query(ctx, `SELECT id, user_id, at, kind, referral_id, body, read_at IS NOT NULL
		FROM notification WHERE user_id = $1 AND id > $2 ORDER BY id DESC LIMIT $3`, user, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Notification{}
	for rows.Next() {
		var n Notification
		var body []byte
		if err := rows.Scan(&n.ID, &n.UserID, &n.At, &n.Kind, &n.ReferralID, &body, &n.Read); err != nil {
			return nil, err
		}
		n.Body = body
		out = append(out, n)
	}
	return out, rows.Err()
}

// notification returns notification id (for the stream).
func (Store) notification(ctx context.Context, d db.DBTX, id int64) (Notification, error) {
	var n Notification
	var body []byte
	err := d.QueryRow(ctx, `SELECT id, user_id, at, kind, referral_id, body, read_at IS NOT NULL FROM notification WHERE id = $1`, id).
		Scan(&n.ID, &n.UserID, &n.At, &n.Kind, &n.ReferralID, &body, &n.Read)
	n.Body = body
	return n, err
}

// RunEscalator escalates overdue referrals every policy.EscalateEvery until
// ctx is cancelled (register it with the server's background work).
// Errors are logged and retried on the next tick.
func (s *Service) RunEscalator(ctx context.Context) error {
	t := time.NewTicker(s.policy.EscalateEvery)
	defer t.Stop()
	for {
		if _, err := s.Escalate(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "referral escalation failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
