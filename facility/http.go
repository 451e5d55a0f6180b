package facility

import (
	"context"
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// Handler serves the /api/v1/facilities routes.
type Handler struct {
	pool *pgxpool.Pool
	// RegionOf returns the region whose facilities the request's user may
	// import (an admin's region). The facility package knows nothing of
	// users; the wiring supplies this.
	RegionOf func(ctx context.Context) string
	// Denied is told about a refused import (for the audit log).
	Denied func(ctx context.Context, reason string)
}

// NewHandler returns the facility routes' handler.
func NewHandler(pool *pgxpool.Pool) *Handler { return &Handler{pool: pool} }

// Routes mounts the facility routes on g (an authenticated /api/v1 group).
// The registry is readable by every signed-in user (referral targets,
// consult addressees); importing needs admin.
func (h *Handler) Routes(g *echo.Group, admin echo.MiddlewareFunc) {
	g.GET("/facilities", h.list)
	g.GET("/facilities/stats", h.stats)
	g.POST("/facilities/import", h.importCSV, admin)
	g.GET("/facilities/:code", h.get)
	g.GET("/facilities/:code/subtree", h.subtree)
	g.GET("/facilities/:code/chain", h.chain)
}

// ListResponse is the body of GET /facilities.
type ListResponse struct {
	Facilities []Facility `json:"facilities"`
}

func (h *Handler) list(c echo.Context) error {
	fields := apperr.Fields{}
	f := Filter{Tier: Tier(c.QueryParam("tier")), Parent: c.QueryParam("parent"), Region: c.QueryParam("region"), Text: c.QueryParam("q")}
	if f.Tier != "" && !f.Tier.Valid() {
		fields.Add("tier", "must be city, county, township or village")
	}
	for k := range c.QueryParams() {
		switch k {
		case "tier", "parent", "region", "q", "limit", "offset":
		default:
			fields.Add(k, "unknown filter")
		}
	}
	var err error
	if f.Limit, err = httpx.QueryInt(c, "limit", 500, 1, 1000); err != nil {
		return err
	}
	if f.Offset, err = httpx.QueryInt(c, "offset", 0, 0, 1<<30); err != nil {
		return err
	}
	if err := fields.Err(); err != nil {
		return err
	}
	fs, err := NewStore(h.pool).List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if fs == nil {
		fs = []Facility{}
	}
	return c.JSON(http.StatusOK, ListResponse{Facilities: fs})
}

func (h *Handler) get(c echo.Context) error {
	f, err := NewStore(h.pool).Get(c.Request().Context(), c.Param("code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f)
}

func (h *Handler) subtree(c echo.Context) error {
	fs, err := NewStore(h.pool).Subtree(c.Request().Context(), c.Param("code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ListResponse{Facilities: fs})
}

func (h *Handler) chain(c echo.Context) error {
	fs, err := NewStore(h.pool).Chain(c.Request().Context(), c.Param("code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ListResponse{Facilities: fs})
}

// StatsResponse is the body of GET /facilities/stats.
type StatsResponse struct {
	Tiers map[Tier]int `json:"tiers"`
}

func (h *Handler) stats(c echo.Context) error {
	st, err := NewStore(h.pool).Stats(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, StatsResponse{Tiers: st})
}

// ImportResponse is the body of POST /facilities/import: the counts, or on
// rejection (400) the error shape with details.rows listing every bad line.
type ImportResponse struct {
	Result ImportResult `json:"result"`
}

// MaxUpload is the largest facility file accepted over HTTP (a county's
// network is a few hundred lines).
const MaxUpload = 4 << 20

func (h *Handler) importCSV(c echo.Context) error {
	body, err := httpx.CSVUpload(c, "file", "the facility file", MaxUpload)
	if err != nil {
		return err
	}
	defer body.Close()
	region := "!" // matches no facility unless the wiring says otherwise
	if h.RegionOf != nil {
		region = h.RegionOf(c.Request().Context())
	}
	res, err := ImportScoped(c.Request().Context(), h.pool, body, region)
	if err != nil {
		if apperr.Is(err, apperr.Forbidden) && h.Denied != nil {
			h.Denied(c.Request().Context(), "facilities outside the region")
		}
		var ie *ImportError
		if errors.As(err, &ie) {
			return &apperr.Error{Code: apperr.Invalid, Message: "the file has bad rows; nothing was written",
				Details: map[string]any{"rows": ie.Rows}}
		}
		return err
	}
	return c.JSON(http.StatusOK, ImportResponse{Result: res})
}
