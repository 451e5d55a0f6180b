package referral

import (
	"context"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// FacilityStats is one facility's referral figures for a month (referrals
// created in that month).
type FacilityStats struct {
	Facility FacilityRef `json:"facility"`
	Sent     int         `json:"sent"`
	Received int         `json:"received"`
	Accepted int         `json:"accepted"`
	// AcceptMedianSeconds and AcceptP90Seconds are the time from sending
	// to acceptance of the referrals this facility received and accepted
	// (null when none was).
	AcceptMedianSeconds *float64 `json:"accept_median_seconds"`
	AcceptP90Seconds    *float64 `json:"accept_p90_seconds"`
	// Overdue counts the referrals this facility received that were not
	// accepted in time.
	Overdue int `json:"overdue"`
	// LoopClosed counts the referrals this facility sent that came back
	// completed with a counter-referral; LoopClosureRate is LoopClosed/Sent
	// (null when nothing was sent).
	LoopClosed      int      `json:"loop_closed"`
	LoopClosureRate *float64 `json:"loop_closure_rate"`
}

// Flow counts referrals from one tier to another, for a chart.
type Flow struct {
	FromTier  facility.Tier `json:"from_tier"`
	ToTier    facility.Tier `json:"to_tier"`
	Direction Direction     `json:"direction"`
	Count     int           `json:"count"`
}

// Stats is GET /referrals/stats.
type Stats struct {
	Month      string          `json:"month"` // YYYY-MM
	Facility   string          `json:"facility,omitempty"`
	Region     string          `json:"region,omitempty"`
	Facilities []FacilityStats `json:"facilities"`
	Flows      []Flow          `json:"flows"`
}

// ParseMonth parses YYYY-MM.
func ParseMonth(s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil || t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, apperr.Field("month", "must be YYYY-MM, e.g. 2019-11")
	}
	return t, nil
}

// Stats returns the referral figures of month (its first day) that p may
// see: an admin's whole region, anyone else their own facility. Months
// follow the database's time zone (Asia/Shanghai).
func (s *Service) Stats(ctx context.Context, p *auth.Principal, month time.Time) (Stats, error) {
	if !p.Has(viewRoles...) {
		return Stats{}, apperr.E(apperr.Forbidden, "your role may not read referral statistics")
	}
	fac, region := auth.ScopeFilter(p)
	st, err := s.store.Stats(ctx, s.pool, month.Format("2006-01"), fac, region)
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}

// Stats computes the figures of month (YYYY-MM) for facility or region.
func (Store) Stats(ctx context.Context, d db.DBTX, month, fac, region string) (Stats, error) {
	st := Stats{Month: month, Facility: fac, Region: region, Facilities: []FacilityStats{}, Flows: []Flow{}}
	const window = `WITH m AS (SELECT ($1 || '-01')::date::timestamptz AS lo, (($1 || '-01')::date + interval '1 month')::timestamptz AS hi),
		scope AS (SELECT code, name, tier, region_code FROM facility WHERE ($2 <> '' AND code = $2) OR ($3 <> '' AND region_code = $3)),
		rs AS (SELECT r.* FROM referral r, m WHERE r.created_at >= m.lo AND r.created_at < m.hi)`
	rows, err := d.Query(ctx, window+`
		SELECT f.code, f.name, f.tier, f.region_code,
			count(*) FILTER (WHERE rs.from_facility = f.code),
			count(*) FILTER (WHERE rs.to_facility = f.code),
			count(*) FILTER (WHERE rs.to_facility = f.code AND rs.accepted_at IS NOT NULL),
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM rs.accepted_at - rs.created_at))
				FILTER (WHERE rs.to_facility = f.code AND rs.accepted_at IS NOT NULL),
			percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM rs.accepted_at - rs.created_at))
				FILTER (WHERE rs.to_facility = f.code AND rs.accepted_at IS NOT NULL),
			count(*) FILTER (WHERE rs.to_facility = f.code AND rs.overdue_at IS NOT NULL),
			count(*) FILTER (WHERE rs.from_facility = f.code AND rs.state = 'completed' AND rs.counter_referral IS NOT NULL)
		FROM scope f JOIN rs ON rs.from_facility = f.code OR rs.to_facility = f.code
		GROUP BY f.code, f.name, f.tier, f.region_code
		ORDER BY array_position(ARRAY['city', 'county', 'township', 'village'], f.tier), f.code`, month, fac, region)
	if err != nil {
		return Stats{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var fs FacilityStats
		if err := rows.Scan(&fs.Facility.Code, &fs.Facility.Name, &fs.Facility.Tier, &fs.Facility.Region, &fs.Sent, &fs.Received,
			&fs.Accepted, &fs.AcceptMedianSeconds, &fs.AcceptP90Seconds, &fs.Overdue, &fs.LoopClosed); err != nil {
			return Stats{}, err
		}
		if fs.Sent > 0 {
			r := float64(fs.LoopClosed) / float64(fs.Sent)
			fs.LoopClosureRate = &r
		}
		st.Facilities = append(st.Facilities, fs)
	}
	if err := rows.Err(); err != nil {
		return Stats{}, err
	}
	rows, err = d.Query(ctx, window+`
		SELECT ff.tier, tf.tier, rs.direction, count(*)
		FROM rs JOIN facility ff ON ff.code = rs.from_facility JOIN facility tf ON tf.code = rs.to_facility
		WHERE rs.from_facility IN (SELECT code FROM scope) OR rs.to_facility IN (SELECT code FROM scope)
		GROUP BY 1, 2, 3
		ORDER BY array_position(ARRAY['city', 'county', 'township', 'village'], ff.tier),
			array_position(ARRAY['city', 'county', 'township', 'village'], tf.tier)`, month, fac, region)
	if err != nil {
		return Stats{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var f Flow
		if err := rows.Scan(&f.FromTier, &f.ToTier, &f.Direction, &f.Count); err != nil {
			return Stats{}, err
		}
		st.Flows = append(st.Flows, f)
	}
	return st, rows.Err()
}
