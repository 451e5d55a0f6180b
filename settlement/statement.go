package settlement

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"io"
	"time"

	"github.com/shopspring/decimal"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/household"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
)

// Statement is a household's annual statement (年度结算清单): every bill of
// every member dated in the year, who paid what of each, and the totals.
type Statement struct {
	Household   string            `json:"household"`
	VillageCode string            `json:"village_code"`
	Category    string            `json:"category"`
	Year        int               `json:"year"`
	Members     []StatementMember `json:"members"`
	Bills       []StatementBill   `json:"bills"`
	Totals      Totals            `json:"totals"`
}

// StatementMember is a member of the household (identity number masked).
type StatementMember struct {
	PersonID   int64  `json:"person_id"`
	Name       string `json:"name"`
	Relation   string `json:"relation"`
	NationalID string `json:"national_id"`
	Totals     Totals `json:"totals"`
}

// StatementBill is one bill of the statement. The split is that of the
// settlement in force; a bill not settled (open, or reversed and not
// settled again) shows zeros and counts in no total.
type StatementBill struct {
	BillID       int64  `json:"bill_id"`
	PersonID     int64  `json:"person_id"`
	PersonName   string `json:"person_name"`
	Facility     string `json:"facility"`
	FacilityName string `json:"facility_name"`
	Kind         string `json:"kind"`
	Date         string `json:"date"`
	Status       string `json:"status"`
	SettlementID int64  `json:"settlement_id,omitempty"`
	Split
}

// Split is who paid what of a bill (or of several).
type Split struct {
	Total         Money `json:"total"`
	Eligible      Money `json:"eligible"`
	Basic         Money `json:"basic"`
	Critical      Money `json:"critical"`
	Assistance    Money `json:"assistance"`
	Supplementary Money `json:"supplementary"`
	Backstop      Money `json:"backstop"`
	Hospital      Money `json:"hospital"`
	Patient       Money `json:"patient"`
}

func (s *Split) add(o *Split) {
	for i, p := range s.fields() {
		p.Decimal = p.Add(o.fields()[i].Decimal)
	}
}

func (s *Split) fields() []*Money {
	return []*Money{&s.Total, &s.Eligible, &s.Basic, &s.Critical, &s.Assistance, &s.Supplementary, &s.Backstop, &s.Hospital, &s.Patient}
}

// Totals sums the settled bills of a year: the split, what the five funds
// paid together, and the number of bills.
type Totals struct {
	Bills   int `json:"bills"`
	Settled int `json:"settled"`
	Split
	Funds Money `json:"funds"`
}

func (t *Totals) add(b *StatementBill) {
	t.Bills++
	if b.Status != StatusSettled {
		return
	}
	t.Settled++
	t.Split.add(&b.Split)
	t.Funds.Decimal = t.Funds.Add(decimal.Sum(b.Basic.Decimal, b.Critical.Decimal, b.Assistance.Decimal, b.Supplementary.Decimal, b.Backstop.Decimal))
}

// HouseholdStatement returns household id's statement for year, for p
// (users of its village and the facilities above it, admins of its region;
// anyone else gets 404). The read is audited.
func (s *Service) HouseholdStatement(ctx context.Context, p *auth.Principal, id string, year int) (Statement, error) {
	hh, err := household.NewStore().GetHousehold(ctx, s.pool, id)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return Statement{}, apperr.E(apperr.NotFound, "household not found")
		}
		return Statement{}, err
	}
	if p != nil {
		chain, err := facility.NewStore(s.pool).Chain(ctx, hh.VillageCode)
		if err != nil {
			return Statement{}, err
		}
		codes := make([]string, len(chain))
		for i, f := range chain {
			codes[i] = f.Code
		}
		if err := s.scope.Check(ctx, p, auth.DenyNotFound, "household", id, codes...); err != nil {
			return Statement{}, err
		}
	}
	st := Statement{Household: hh.ID, VillageCode: hh.VillageCode, Category: string(hh.Category), Year: year,
		Members: []StatementMember{}, Bills: []StatementBill{}}
	index := map[int64]int{}
	ids := make([]int64, 0, len(hh.Members))
	for _, m := range hh.Members {
		index[m.ID] = len(st.Members)
		st.Members = append(st.Members, StatementMember{PersonID: m.ID, Name: m.Name, Relation: string(m.Relation), NationalID: household.MaskID(m.NationalID)})
		ids = append(ids, m.ID)
	}
	if st.Bills, err = statementBills(ctx, s.pool, ids, year); err != nil {
		return Statement{}, err
	}
	for i := range st.Bills {
		b := &st.Bills[i]
		st.Totals.add(b)
		st.Members[index[b.PersonID]].Totals.add(b)
		b.PersonName = st.Members[index[b.PersonID]].Name
	}
	return st, auth.Audit(ctx, s.pool, auth.Entry{Action: "read", RecordType: "household_statement", RecordID: id,
		Facility: hh.VillageCode, Username: s.actor(p), Detail: map[string]any{"year": year, "person_ids": ids, "bills": len(st.Bills)}})
}

// statementBills reads the bills of persons dated in year, by date.
func statementBills(ctx context.Context, d db.DBTX, persons []int64, year int) ([]StatementBill, error) {
	from := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	rows, err := d.Query(ctx, `SELECT b.id, b.person_id, b.facility_code, f.name, b.kind, b.bill_date, bs.status, coalesce(bs.settlement_id, 0),
			coalesce(s.total, 0), coalesce(s.eligible, 0), coalesce(s.basic, 0), coalesce(s.critical, 0), coalesce(s.assistance, 0),
			coalesce(s.supplementary, 0), coalesce(s.backstop, 0), coalesce(s.hospital, 0), coalesce(s.patient, 0)
		FROM bill b JOIN bill_state bs ON bs.bill_id = b.id JOIN facility f ON f.code = b.facility_code
			LEFT JOIN settlement s ON s.id = bs.settlement_id
		WHERE b.person_id = ANY($1) AND b.bill_date >= $2 AND b.bill_date < $3
		ORDER BY b.bill_date, b.id`, persons, from, from.AddDate(1, 0, 0))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []StatementBill{}
	for rows.Next() {
		var b StatementBill
		var date time.Time
		if err := rows.Scan(&b.BillID, &b.PersonID, &b.Facility, &b.FacilityName, &b.Kind, &date, &b.Status, &b.SettlementID,
			&b.Total.Decimal, &b.Eligible.Decimal, &b.Basic.Decimal, &b.Critical.Decimal, &b.Assistance.Decimal,
			&b.Supplementary.Decimal, &b.Backstop.Decimal, &b.Hospital.Decimal, &b.Patient.Decimal); err != nil {
			return nil, err
		}
		b.Date = dayString(date)
		out = append(out, b)
	}
	return out, rows.Err()
}

// HouseholdTotals is the household package's TotalsFunc: the year's totals
// per fund of a household's settled bills (nil when it has no bill in the
// year). The caller has checked access and audits the read.
func HouseholdTotals(ctx context.Context, d db.DBTX, householdID string, year int) (any, error) {
	rows, err := d.Query(ctx, `SELECT id FROM person WHERE household_id = $1`, householdID)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	bills, err := statementBills(ctx, d, ids, year)
	if err != nil || len(bills) == 0 {
		return nil, err
	}
	t := &Totals{}
	for i := range bills {
		t.add(&bills[i])
	}
	return struct {
		Year int `json:"year"`
		*Totals
	}{year, t}, nil
}

// statementCSS is the printable page's only style; the page's
// Content-Security-Policy allows exactly it (StatementCSP).
const statementCSS = `body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei",sans-serif;margin:2em;color:#111}
h1{font-size:1.4em;margin:0 0 .2em}h1 small,th small{font-weight:normal;color:#555}
table{border-collapse:collapse;width:100%;margin:1em 0;font-size:.9em}
th,td{border:1px solid #999;padding:.3em .5em;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:bold}.meta{color:#333}@media print{body{margin:0}a{color:#000}}`

// StatementCSP is the Content-Security-Policy of the printable statement:
// nothing but its own inline style.
var StatementCSP = func() string {
	h := sha256.Sum256([]byte(statementCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var statementTmpl = template.Must(template.New("statement").Funcs(template.FuncMap{
	"kind": func(k string) string {
		if k == KindInpatient {
			return "住院 inpatient"
		}
		return "门诊 outpatient"
	},
	"status": func(s string) string {
		switch s {
		case StatusSettled:
			return "已结算 settled"
		case StatusReversed:
			return "已冲正 reversed"
		}
		return "未结算 not settled"
	},
	"css": func() template.CSS { return template.CSS(statementCSS) },
}).Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{.Year}} 年度医疗费用结算清单 Annual settlement statement — {{.Household}}</title>
<style>{{css}}</style></head>
<body>
<h1>{{.Year}} 年度医疗费用“一站式”结算清单 <small>Annual one-stop settlement statement</small></h1>
<p class="meta">户编号 Household: <b>{{.Household}}</b> · 村卫生室 Village clinic: {{.VillageCode}} · 类别 Category: {{.Category}}</p>
<table>
<thead><tr><th>成员 <small>Member</small></th><th>关系 <small>Relation</small></th><th>身份证号 <small>ID number</small></th>
<th class="n">费用单 <small>Bills</small></th><th class="n">总费用 <small>Total</small></th><th class="n">各基金支付 <small>Funds paid</small></th>
<th class="n">个人自付 <small>Patient paid</small></th></tr></thead>
<tbody>{{range .Members}}<tr><td>{{.Name}}</td><td>{{.Relation}}</td><td>{{.NationalID}}</td><td class="n">{{.Totals.Bills}}</td>
<td class="n">{{.Totals.Total}}</td><td class="n">{{.Totals.Funds}}</td><td class="n">{{.Totals.Patient}}</td></tr>{{end}}</tbody>
</table>
<table>
<thead><tr><th>日期 <small>Date</small></th><th>患者 <small>Patient</small></th><th>医疗机构 <small>Facility</small></th><th>类别 <small>Kind</small></th>
<th>状态 <small>Status</small></th><th class="n">总费用 <small>Total</small></th><th class="n">基本医保 <small>Basic</small></th>
<th class="n">大病保险 <small>Critical illness</small></th><th class="n">医疗救助 <small>Assistance</small></th>
<th class="n">补充医疗保险 <small>Supplementary</small></th><th class="n">政府兜底 <small>Backstop</small></th>
<th class="n">医院承担 <small>Hospital</small></th><th class="n">个人自付 <small>Patient</small></th></tr></thead>
<tbody>{{range .Bills}}<tr><td>{{.Date}}</td><td>{{.PersonName}}</td><td>{{.FacilityName}}</td><td>{{kind .Kind}}</td><td>{{status .Status}}</td>
<td class="n">{{.Total}}</td><td class="n">{{.Basic}}</td><td class="n">{{.Critical}}</td><td class="n">{{.Assistance}}</td>
<td class="n">{{.Supplementary}}</td><td class="n">{{.Backstop}}</td><td class="n">{{.Hospital}}</td><td class="n">{{.Patient}}</td></tr>
{{else}}<tr><td colspan="13">本年度无费用单 No bills this year</td></tr>{{end}}</tbody>
<tfoot><tr><td colspan="5">合计（已结算 {{.Totals.Settled}} 张）<small>Total of settled bills</small></td>
<td class="n">{{.Totals.Total}}</td><td class="n">{{.Totals.Basic}}</td><td class="n">{{.Totals.Critical}}</td><td class="n">{{.Totals.Assistance}}</td>
<td class="n">{{.Totals.Supplementary}}</td><td class="n">{{.Totals.Backstop}}</td><td class="n">{{.Totals.Hospital}}</td><td class="n">{{.Totals.Patient}}</td></tr></tfoot>
</table>
<p class="meta">各基金合计支付 Paid by the funds in all: <b>{{.Totals.Funds}}</b> · 个人自付合计 Paid by the household: <b>{{.Totals.Patient}}</b></p>
</body></html>
`))

// WriteHTML renders the statement as a printable page (html/template:
// every value escaped).
func (st *Statement) WriteHTML(w io.Writer) error { return statementTmpl.Execute(w, st) }
