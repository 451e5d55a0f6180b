package household

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/httpx"
)

// TotalsFunc returns a household's totals for a year (the settlement
// package's sums per fund). A nil result is left out of the response.
type TotalsFunc func(ctx context.Context, d db.DBTX, householdID string, year int) (any, error)

// Handler serves the /api/v1/persons and /api/v1/households routes.
type Handler struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	store *Store
	scope *auth.Scope
	// Totals, when set, fills the totals field of GET /households/{id}.
	Totals TotalsFunc
}

// NewHandler returns the household routes' handler.
func NewHandler(pool *pgxpool.Pool, log *slog.Logger) *Handler {
	return &Handler{pool: pool, log: log, store: NewStore(), scope: &auth.Scope{DB: pool, Log: log}}
}

// Roles that read persons and households: everyone who treats or bills
// patients. (Auditors read the audit log, not records.)
var readRoles = []auth.Role{auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleBillingClerk, auth.RoleAdmin}

// Roles that see a person's full identity number on the person's own
// page, and that import the roster.
var fullIDRoles = []auth.Role{auth.RoleBillingClerk, auth.RoleAdmin}

// Routes mounts the routes on g (the authenticated /api/v1 group).
//
// A person's records belong to their home village clinic: they are seen by
// users of that village, of the facilities above it (township, county,
// city), and by an admin of its region; anyone else gets 404. Every read
// is audited; identity numbers are masked except on GET /persons/{id}
// with full=1, for billing clerks and admins, audited as read_full_id.
func (h *Handler) Routes(g *echo.Group) {
	read := auth.Allow(h.pool, h.log, readRoles...)
	g.GET("/persons", h.search, read)
	g.GET("/persons/:id", h.getPerson, read)
	g.GET("/households/:id", h.getHousehold, read)
	g.POST("/households/import", h.importRoster, auth.Allow(h.pool, h.log, fullIDRoles...))
}

// PersonView is a person as the API shows it. NationalID is masked
// (420626********1234) unless the response says national_id_full.
type PersonView struct {
	ID             int64         `json:"id"`
	NationalID     string        `json:"national_id"`
	NationalIDFull bool          `json:"national_id_full,omitempty"`
	Name           string        `json:"name"`
	Sex            string        `json:"sex"`
	BirthDate      string        `json:"birth_date"`
	HouseholdID    string        `json:"household_id"`
	Relation       Relation      `json:"relation"`
	VillageCode    string        `json:"village_code"`
	Category       Category      `json:"category"`
	Insurance      []YearInsured `json:"insurance,omitempty"`
}

// YearInsured is a person's enrolment in one year.
type YearInsured struct {
	Year    int  `json:"year"`
	Insured bool `json:"insured"`
}

// View renders p for the API with the identity number masked.
func (p Person) View() PersonView {
	return PersonView{ID: p.ID, NationalID: MaskID(p.NationalID), Name: p.Name, Sex: p.Sex,
		BirthDate: p.BirthDate.Format("2006-01-02"), HouseholdID: p.HouseholdID, Relation: p.Relation,
		VillageCode: p.VillageCode, Category: p.Category}
}

// PersonList is the body of GET /persons.
type PersonList struct {
	Persons []PersonView `json:"persons"`
}

func (h *Handler) search(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	fields := apperr.Fields{}
	for k := range c.QueryParams() {
		switch k {
		case "q", "village", "household", "limit", "offset":
		default:
			fields.Add(k, "unknown filter")
		}
	}
	f := Filter{Q: strings.TrimSpace(c.QueryParam("q")), Village: c.QueryParam("village"), HouseholdID: c.QueryParam("household")}
	if len(f.Q) > 100 {
		fields.Add("q", "at most 100 characters")
	}
	if f.Limit, err = httpx.QueryInt(c, "limit", 50, 1, 500); err != nil {
		return err
	}
	if f.Offset, err = httpx.QueryInt(c, "offset", 0, 0, 1<<30); err != nil {
		return err
	}
	if err := fields.Err(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	region := ""
	if p.Role == auth.RoleAdmin {
		region = p.Region
	}
	if f.Scope, err = h.store.VisibleVillages(ctx, h.pool, p.Facility, region); err != nil {
		return err
	}
	ps, err := h.store.Search(ctx, h.pool, f)
	if err != nil {
		return err
	}
	out := PersonList{Persons: make([]PersonView, 0, len(ps))}
	ids := make([]int64, 0, len(ps))
	for _, x := range ps {
		out.Persons = append(out.Persons, x.View())
		ids = append(ids, x.ID)
	}
	detail := map[string]any{"ids": ids, "count": len(ids)}
	if f.Q != "" {
		detail["q"] = maskQuery(f.Q)
	}
	if f.Village != "" {
		detail["village"] = f.Village
	}
	if f.HouseholdID != "" {
		detail["household"] = f.HouseholdID
	}
	if err := auth.Audit(ctx, h.pool, auth.Entry{Action: "read", RecordType: "person", RecordID: "search",
		Facility: p.Facility, Detail: detail}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// maskQuery keeps a search text fit for the audit log: digit strings
// longer than 4 (a whole or partial identity number) are masked.
func maskQuery(q string) string {
	if isIDLike(q) && len(q) > 4 {
		return MaskID(q)
	}
	return q
}

// canSee checks that p may see records of village (and answers 404 when
// not, since a person's existence must not leak).
func (h *Handler) canSee(ctx context.Context, p *auth.Principal, recordType, recordID, village string) error {
	chain, err := facility.NewStore(h.pool).Chain(ctx, village)
	if err != nil {
		return err
	}
	codes := make([]string, len(chain))
	for i, f := range chain {
		codes[i] = f.Code
	}
	return h.scope.Check(ctx, p, auth.DenyNotFound, recordType, recordID, codes...)
}

func (h *Handler) getPerson(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return apperr.E(apperr.NotFound, "person not found")
	}
	full := false
	switch v := c.QueryParam("full"); v {
	case "", "0", "false":
	case "1", "true":
		full = true
	default:
		return apperr.Field("full", "must be 1 or 0")
	}
	ctx := c.Request().Context()
	person, err := h.store.GetPerson(ctx, h.pool, id)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.E(apperr.NotFound, "person not found")
		}
		return err
	}
	if err := h.canSee(ctx, p, "person", c.Param("id"), person.VillageCode); err != nil {
		return err
	}
	if full && !p.Has(fullIDRoles...) {
		_ = auth.Audit(ctx, h.pool, auth.Entry{Action: "deny", RecordType: "person", RecordID: c.Param("id"),
			Facility: person.VillageCode, Detail: map[string]any{"reason": "full identity number", "role": p.Role}})
		return apperr.E(apperr.Forbidden, "your role may not see full identity numbers")
	}
	years, err := h.store.InsuranceYears(ctx, h.pool, id)
	if err != nil {
		return err
	}
	v := person.View()
	for y, ins := range years {
		v.Insurance = append(v.Insurance, YearInsured{Year: y, Insured: ins})
	}
	sortYears(v.Insurance)
	action := "read"
	if full {
		action = "read_full_id"
		v.NationalID, v.NationalIDFull = person.NationalID, true
	}
	if err := auth.Audit(ctx, h.pool, auth.Entry{Action: action, RecordType: "person", RecordID: c.Param("id"),
		Facility: person.VillageCode, Detail: map[string]any{"national_id": MaskID(person.NationalID)}}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func sortYears(ys []YearInsured) {
	for i := 1; i < len(ys); i++ {
		for j := i; j > 0 && ys[j].Year < ys[j-1].Year; j-- {
			ys[j], ys[j-1] = ys[j-1], ys[j]
		}
	}
}

// HouseholdView is the body of GET /households/{id}.
type HouseholdView struct {
	ID          string       `json:"id"`
	VillageCode string       `json:"village_code"`
	Category    Category     `json:"category"`
	Members     []PersonView `json:"members"`
	// Totals is the year's totals per fund (filled by the settlement
	// package through Handler.Totals); omitted when there are none.
	Totals any `json:"totals,omitempty"`
}

func (h *Handler) getHousehold(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	year, err := httpx.QueryInt(c, "year", CurrentYear(), 2000, 2100)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	id := c.Param("id")
	hh, err := h.store.GetHousehold(ctx, h.pool, id)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.E(apperr.NotFound, "household not found")
		}
		return err
	}
	if err := h.canSee(ctx, p, "household", id, hh.VillageCode); err != nil {
		return err
	}
	v := HouseholdView{ID: hh.ID, VillageCode: hh.VillageCode, Category: hh.Category, Members: make([]PersonView, 0, len(hh.Members))}
	ids := make([]int64, 0, len(hh.Members))
	for _, m := range hh.Members {
		v.Members = append(v.Members, m.View())
		ids = append(ids, m.ID)
	}
	if h.Totals != nil {
		if v.Totals, err = h.Totals(ctx, h.pool, hh.ID, year); err != nil {
			return err
		}
	}
	if err := auth.Audit(ctx, h.pool, auth.Entry{Action: "read", RecordType: "household", RecordID: id,
		Facility: hh.VillageCode, Detail: map[string]any{"person_ids": ids}}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// ImportResponse is the body of POST /households/import.
type ImportResponse struct {
	Report *Report `json:"report"`
}

// MaxUpload is the largest roster accepted over HTTP (the full county is
// about 6 MB).
const MaxUpload = 64 << 20

func (h *Handler) importRoster(c echo.Context) error {
	opts := Options{}
	var err error
	if opts.Year, err = httpx.QueryInt(c, "year", CurrentYear(), 2000, 2100); err != nil {
		return err
	}
	switch v := c.QueryParam("skip_invalid"); v {
	case "", "0", "false":
	case "1", "true":
		opts.SkipInvalid = true
	default:
		return apperr.Field("skip_invalid", "must be 1 or 0")
	}
	body, err := httpx.CSVUpload(c, "file", "the roster", MaxUpload)
	if err != nil {
		return err
	}
	defer body.Close()
	rep, err := Import(c.Request().Context(), h.pool, body, opts)
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			return &apperr.Error{Code: apperr.Invalid, Message: "the roster has bad lines; nothing was written",
				Details: map[string]any{"rows": ie.Report.Errors, "report": ie.Report}}
		}
		return err
	}
	return c.JSON(http.StatusOK, ImportResponse{Report: rep})
}

// MarshalJSON renders a Person as its PersonView, identity number masked,
// so a Person put in a response or a log by mistake never shows it whole.
func (p Person) MarshalJSON() ([]byte, error) { return json.Marshal(p.View()) }
