package household

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/dbtest"
)

// testBundle is what most database tests need: a fresh database holding
// the demo county's facilities and a second county in region 420625.
type testBundle struct {
	// pool connects as the least-privileged application role, as the
	// server does; owner as the schema owner.
	pool, owner *pgxpool.Pool
	villages    []string // the demo county's village codes, sorted
	ctx         context.Context
}

// otherRegionCSV adds a second county (region 420625) to the demo network.
const otherRegionCSV = `code,name,tier,parent_code,region_code
K420625-01,测试县人民医院,county,C4206-01,420625
T420625-01,测试镇卫生院,township,K420625-01,420625
V420625-001,测试镇第01村卫生室,village,T420625-01,420625
`

func setup(t testing.TB) *testBundle {
	t.Helper()
	owner, pool := dbtest.NewApp(t)
	ctx := context.Background()
	if _, err := facility.Import(ctx, owner, bytes.NewReader(append(slices.Clone(facility.DemoCSV), otherRegionCSV[strings.IndexByte(otherRegionCSV, '\n')+1:]...))); err != nil {
		t.Fatalf("import facilities: %v", err)
	}
	fs, err := facility.NewStore(pool).List(ctx, facility.Filter{Tier: facility.Village, Region: "420626", Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{pool: pool, owner: owner, ctx: ctx}
	for _, f := range fs {
		b.villages = append(b.villages, f.Code)
	}
	return b
}

// count returns the result of a count(*) query.
func (b *testBundle) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
