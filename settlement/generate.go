package settlement

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/internal/db"
)

// GenPerson is a patient the bill generator may bill: a person and the
// facilities of their home area.
type GenPerson struct {
	ID       int64
	Village  string
	Township string // the village's parent
	Counties []string
}

// LoadGenPersons reads every person with their home village and township,
// and the county hospitals of the village's region, for GenerateBills.
func LoadGenPersons(ctx context.Context, d db.DBTX) ([]GenPerson, error) {
	counties := map[string][]string{}
	rows, err := d.Query(ctx, `SELECT code, region_code FROM facility WHERE tier = 'county' ORDER BY code`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var code, region string
		if err := rows.Scan(&code, &region); err != nil {
			rows.Close()
			return nil, err
		}
		counties[region] = append(counties[region], code)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = d.Query(ctx, `SELECT p.id, h.village_code, coalesce(v.parent_code, ''), v.region_code
		FROM person p JOIN household h ON h.id = p.household_id JOIN facility v ON v.code = h.village_code ORDER BY p.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GenPerson
	for rows.Next() {
		var g GenPerson
		var region string
		if err := rows.Scan(&g.ID, &g.Village, &g.Township, &region); err != nil {
			return nil, err
		}
		g.Counties = counties[region]
		out = append(out, g)
	}
	return out, rows.Err()
}

// catalogueItem is an item of the generator's price list.
type catalogueItem struct {
	code, name, class, price string
	perDay                   bool // quantity = length of stay
}

var (
	outpatientItems = []catalogueItem{
		{"ZC001", "普通门诊诊查费", "A", "10", false},
		{"XM101", "血常规", "A", "20", false},
		{"YP201", "阿莫西林胶囊 0.25g", "A", "0.45", false},
		{"YP202", "复方甘草片", "A", "0.08", false},
		{"YP301", "头孢克肟分散片 0.1g", "B", "3.25", false},
		{"YP302", "奥美拉唑肠溶胶囊", "B", "1.86", false},
		{"XM401", "针灸", "B", "25", false},
		{"YP901", "进口营养补充剂", "C", "45.5", false},
	}
	inpatientItems = []catalogueItem{
		{"CW001", "床位费（普通病房）", "A", "30", true},
		{"HL001", "Ⅱ级护理", "A", "25", true},
		{"XM102", "生化全套", "A", "180", false},
		{"XM103", "胸部 X 线摄影", "A", "60", false},
		{"YP203", "0.9% 氯化钠注射液 250ml", "A", "3.2", false},
		{"YP204", "5% 葡萄糖注射液 500ml", "A", "4.1", false},
		{"XM402", "CT 平扫", "B", "180", false},
		{"XM403", "彩色多普勒超声", "B", "120", false},
		{"YP303", "注射用头孢曲松钠 1g", "B", "12.8", false},
		{"YP304", "注射用奥美拉唑钠", "B", "18.65", false},
		{"SS501", "腹腔镜胆囊切除术", "A", "2400", false},
		{"CL601", "一次性吻合器", "B", "1850", false},
		{"CW901", "特需病房加收", "C", "120", true},
		{"CL902", "进口冠脉支架", "C", "6800", false},
	}
)

// GenerateBills writes count bills of year in the bills CSV format
// (BillCSVHeader) for the given persons: about two thirds outpatient visits
// (village clinic or township health centre), one third inpatient stays
// (township or county hospital), with realistic items and prices, some
// emergency admissions, no referrals, dates up to until. The same seed
// gives the same file.
func GenerateBills(w io.Writer, seed int64, count, year int, persons []GenPerson, until time.Time) error {
	if len(persons) == 0 {
		return errors.New("no persons to bill: load a roster first")
	}
	first := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(year, 12, 31, 0, 0, 0, 0, time.UTC)
	if u := today(until); u.Before(last) {
		last = u
	}
	if last.Before(first) {
		return fmt.Errorf("year %d has not started", year)
	}
	days := int(last.Sub(first).Hours()/24) + 1
	rng := rand.New(rand.NewPCG(uint64(seed), 0x716e6267))
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := csv.NewWriter(bw)
	if err := cw.Write(BillCSVHeader); err != nil {
		return err
	}
	rec := make([]string, nBillCols)
	for i := range count {
		p := persons[rng.IntN(len(persons))]
		for k := range rec {
			rec[k] = ""
		}
		rec[cExternal] = fmt.Sprintf("G%d-%07d", year, i+1)
		rec[cPerson] = strconv.FormatInt(p.ID, 10)
		day := first.AddDate(0, 0, rng.IntN(days))
		var items []catalogueItem
		var nLines, stay int
		if rng.IntN(3) > 0 || p.Township == "" || len(p.Counties) == 0 {
			rec[cKind] = KindOutpatient
			rec[cFacility] = p.Village
			if rng.IntN(10) < 3 && p.Township != "" {
				rec[cFacility] = p.Township
			}
			rec[cVisit] = day.Format(time.DateOnly)
			items, nLines = outpatientItems, 1+rng.IntN(4)
		} else {
			rec[cKind] = KindInpatient
			rec[cFacility] = p.Township
			if rng.IntN(2) == 0 {
				rec[cFacility] = p.Counties[rng.IntN(len(p.Counties))]
			}
			stay = 2 + rng.IntN(12)
			rec[cAdmitted] = day.AddDate(0, 0, -stay).Format(time.DateOnly)
			rec[cDischarged] = day.Format(time.DateOnly)
			if rng.IntN(10) == 0 {
				rec[cEmergency] = "true"
			}
			items, nLines = inpatientItems, 5+rng.IntN(10)
		}
		for range nLines {
			it := items[rng.IntN(len(items))]
			if it.price == "6800" && rng.IntN(4) > 0 {
				it = items[0] // stents are rare
			}
			q := 1 + rng.IntN(6)
			if it.perDay {
				q = stay
			}
			if q == 0 {
				q = 1
			}
			price := decimal.RequireFromString(it.price)
			rec[cItemCode], rec[cItemName], rec[cClass] = it.code, it.name, it.class
			rec[cQuantity], rec[cUnitPrice] = strconv.Itoa(q), it.price
			rec[cAmount] = round2(price.Mul(decimal.NewFromInt(int64(q)))).StringFixed(2)
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
