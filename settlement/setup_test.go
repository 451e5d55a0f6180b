package settlement

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/dbtest"
)

// Facilities of the demo county (region 420626) used by the tests, and a
// second county (region 420625).
const (
	tCounty   = "K420626-01"
	tTownship = "T420626-01"
	tTown2    = "T420626-02"
	tVillage  = "V420626-001"
	tVillage2 = "V420626-002"
	oCounty   = "K420625-01"
)

const otherRegionCSV = `K420625-01,测试县人民医院,county,C4206-01,420625
T420625-01,测试镇卫生院,township,K420625-01,420625
V420625-001,测试镇第01村卫生室,village,T420625-01,420625
`

// bundle is a fresh database with the demo county, the service on it (as
// the application role) and fixture factories.
type bundle struct {
	owner, pool *pgxpool.Pool
	svc         *Service
	ctx         context.Context
	seq         atomic.Int64
}

func setup(t testing.TB) *bundle {
	t.Helper()
	owner, pool := dbtest.NewApp(t)
	ctx := context.Background()
	if err := importDemo(ctx, owner); err != nil {
		t.Fatalf("import facilities: %v", err)
	}
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{owner: owner, pool: pool, ctx: ctx, svc: NewService(pool, nil, reg)}
	return b
}

// importDemo loads the demo county's facilities and the second county.
func importDemo(ctx context.Context, owner *pgxpool.Pool) error {
	_, err := facility.Import(ctx, owner, bytes.NewReader(append(slices.Clone(facility.DemoCSV), otherRegionCSV...)))
	return err
}

// household adds a household of village with category and returns its id.
func (b *bundle) household(t testing.TB, village, category string) string {
	t.Helper()
	id := fmt.Sprintf("HH-%d", b.seq.Add(1))
	if _, err := b.owner.Exec(b.ctx, `INSERT INTO household (id, village_code, category) VALUES ($1, $2, $3)`, id, village, category); err != nil {
		t.Fatal(err)
	}
	return id
}

// member adds a person to household hh, insured in the given years.
func (b *bundle) member(t testing.TB, hh, relation string, insured ...int) int64 {
	t.Helper()
	n := b.seq.Add(1)
	id17 := fmt.Sprintf("4206261980%02d%02d%03d", 1+n/1000%12, 1+n/12000%28, n%1000)
	var id int64
	if err := b.owner.QueryRow(b.ctx, `INSERT INTO person (national_id, name, household_id, relation) VALUES ($1, $2, $3, $4) RETURNING id`,
		id17+string(household.CheckChar(id17)), fmt.Sprintf("病人%d", n), hh, relation).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for _, y := range insured {
		if _, err := b.owner.Exec(b.ctx, `INSERT INTO person_insurance (person_id, year, insured) VALUES ($1, $2, true)`, id, y); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// person adds a one-person household.
func (b *bundle) person(t testing.TB, village, category string, insured ...int) int64 {
	t.Helper()
	return b.member(t, b.household(t, village, category), "head", insured...)
}

// user adds a user and returns its principal.
func (b *bundle) user(t testing.TB, role auth.Role, fac string) *auth.Principal {
	t.Helper()
	n := b.seq.Add(1)
	p := &auth.Principal{Username: fmt.Sprintf("u%d.%s", n, strings.ReplaceAll(string(role), "_", "-")), Role: role, Facility: fac}
	if err := b.owner.QueryRow(b.ctx, `INSERT INTO app_user (username, password_hash, role, facility_code)
		VALUES ($1, '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', $2, $3) RETURNING id`, p.Username, role, fac).Scan(&p.UserID); err != nil {
		t.Fatal(err)
	}
	if err := b.owner.QueryRow(b.ctx, `SELECT tier, region_code FROM facility WHERE code = $1`, fac).Scan(&p.Tier, &p.Region); err != nil {
		t.Fatal(err)
	}
	return p
}

// referral adds a referral of person from → to in state.
func (b *bundle) referral(t testing.TB, person int64, from, to, direction, state string) int64 {
	t.Helper()
	sender := b.user(t, auth.RoleDoctor, from)
	var counter any
	if state == "completed" {
		counter = `{"findings": "x", "treatment": "y", "advice": "z", "return_down": false}`
	}
	var id int64
	now := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := b.owner.QueryRow(b.ctx, `INSERT INTO referral (person_id, from_facility, to_facility, direction, urgency, state, sender_id,
			diagnoses, summary, created_at, updated_at, due_at, counter_referral)
		VALUES ($1, $2, $3, $4, 'urgent', $5, $6, '{I63.9}', '转诊', $7, $7, $7, $8) RETURNING id`,
		person, from, to, direction, state, sender.UserID, now, counter).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// line builds a bill line of amount (quantity 1).
func line(class, amount string) LineInput {
	return LineInput{ItemCode: "X" + class, Name: "项目" + class, Class: class, Quantity: "1", UnitPrice: amount}
}

// inpatientInput is an inpatient stay discharged on day.
func inpatientInput(person int64, fac, admitted, discharged string, lines ...LineInput) BillInput {
	return BillInput{PersonID: person, Facility: fac, Kind: KindInpatient, AdmittedOn: admitted, DischargedOn: discharged, Lines: lines}
}

// outpatientInput is a visit on day.
func outpatientInput(person int64, fac, day string, lines ...LineInput) BillInput {
	return BillInput{PersonID: person, Facility: fac, Kind: KindOutpatient, VisitOn: day, Lines: lines}
}

// newBill records in as p and returns the bill id.
func (b *bundle) newBill(t testing.TB, p *auth.Principal, in BillInput) int64 {
	t.Helper()
	v, _, err := b.svc.CreateBill(b.ctx, p, &in)
	if err != nil {
		t.Fatalf("create bill: %v", err)
	}
	return v.ID
}

// verify fails the test unless Verify passes.
func (b *bundle) verify(t testing.TB) {
	t.Helper()
	if err := Verify(b.ctx, b.pool); err != nil {
		t.Fatal(err)
	}
}

// resultOf decodes a settlement's engine result.
func resultOf(t testing.TB, v SettlementView) Result {
	t.Helper()
	var r Result
	if err := r.UnmarshalJSON(v.Result); err != nil {
		t.Fatal(err)
	}
	return r
}
