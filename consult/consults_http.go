package consult

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
	"github.com/qinba/qinba/referral"
)

// IdempotencyHeader carries the optional idempotency key of POST /consults
// and POST /consults/{id}/referral.
const IdempotencyHeader = "Idempotency-Key"

// TURNCredentials issues TURN credentials (*TURNServer).
type TURNCredentials interface {
	Credentials(userID string, ttl time.Duration) ICEServer
}

// HandlerConfig configures the consult records' HTTP routes.
type HandlerConfig struct {
	Service *Service
	// Tokens issues room tokens. Required.
	Tokens *RoomTokens
	// TURN, if set, adds TURN credentials to a room token's ice_servers.
	TURN TURNCredentials
	// TokenTTL is the lifetime of room tokens and TURN credentials
	// (DefaultRoomTokenTTL if zero).
	TokenTTL time.Duration
	// RecordDir is where the SFU writes recordings (downloads are served
	// only from under it).
	RecordDir string
}

// Handler serves the consult records' routes.
type Handler struct{ cfg HandlerConfig }

// NewHandler returns the consult routes' handler.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultRoomTokenTTL
	}
	return &Handler{cfg: cfg}
}

// Routes mounts the consult records' routes on the access-token group.
// The signalling WebSocket (SFU.SignalHandler) is not among them: it takes
// room tokens, not access tokens, and is mounted outside that group.
func (h *Handler) Routes(g *echo.Group) {
	pool, log := h.cfg.Service.pool, h.cfg.Service.log
	requesters := auth.Allow(pool, log, auth.RoleVillageDoctor, auth.RoleDoctor)
	readers := auth.Allow(pool, log, auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleAdmin)
	billing := auth.Allow(pool, log, auth.RoleVillageDoctor, auth.RoleDoctor, auth.RoleAdmin, auth.RoleBillingClerk)
	doctors := auth.Allow(pool, log, auth.RoleDoctor)
	g.POST("/consults", h.create, requesters)
	g.GET("/consults", h.list, readers)
	g.GET("/consults/:id", h.get, readers)
	g.POST("/consults/:id/cancel", h.cancel, requesters)
	g.POST("/consults/:id/end", h.end, requesters)
	g.PUT("/consults/:id/notes", h.notes, doctors)
	g.POST("/consults/:id/token", h.token, requesters)
	g.POST("/consults/:id/recording", h.consent, requesters)
	g.GET("/consults/:id/recordings", h.recordings, requesters)
	g.GET("/consults/:id/recordings/:rid", h.download, requesters)
	g.POST("/consults/:id/referral", h.referral, requesters)
	g.GET("/consults/:id/fee", h.fee, billing)
}

func pathID(c echo.Context, name string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, apperr.E(apperr.NotFound, "consult not found")
	}
	return id, nil
}

// call binds the principal and the consult id.
func (h *Handler) call(c echo.Context) (*auth.Principal, int64, error) {
	p, err := auth.Current(c)
	if err != nil {
		return nil, 0, err
	}
	id, err := pathID(c, "id")
	if err != nil {
		// Audited like any other unknown consult.
		return nil, 0, h.cfg.Service.scope.Check(c.Request().Context(), p, auth.DenyNotFound, "consult", c.Param("id"), auth.NoFacility)
	}
	return p, id, nil
}

func (h *Handler) create(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	var req CreateRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	con, created, err := h.cfg.Service.Create(c.Request().Context(), p, req, c.Request().Header.Get(IdempotencyHeader))
	if err != nil {
		return err
	}
	if created {
		return c.JSON(http.StatusCreated, con)
	}
	return c.JSON(http.StatusOK, con)
}

// ListResponse is the answer of GET /consults.
type ListResponse struct {
	Consults []Consult `json:"consults"`
}

func (h *Handler) list(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	limit, err := httpx.QueryInt(c, "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	cs, err := h.cfg.Service.List(c.Request().Context(), p, c.QueryParam("box"), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ListResponse{Consults: cs})
}

func (h *Handler) get(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	con, err := h.cfg.Service.Get(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, con)
}

func (h *Handler) cancel(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	con, err := h.cfg.Service.Cancel(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, con)
}

func (h *Handler) end(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	con, err := h.cfg.Service.End(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, con)
}

func (h *Handler) notes(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	var req NotesRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	con, err := h.cfg.Service.SetNotes(c.Request().Context(), p, id, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, con)
}

// TokenResponse is the answer of POST /consults/{id}/token.
type TokenResponse struct {
	Token string `json:"token"`
	// ExpiresIn is the token's lifetime in seconds: connect before then.
	ExpiresIn int `json:"expires_in"`
	// UserID is the caller's participant id in the room (the stream id of
	// its tracks, the user_id of "participants" messages): the username.
	UserID     string      `json:"user_id"`
	ICEServers []ICEServer `json:"ice_servers"`
	// SignalURL is the path of the signalling WebSocket (same host).
	SignalURL string `json:"signal_url"`
}

func (h *Handler) token(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	con, err := h.cfg.Service.JoinCheck(ctx, p, id)
	if err != nil {
		return err
	}
	tok, exp, err := h.cfg.Tokens.Issue(RoomGrant{ConsultID: RoomID(id), UserID: p.Username, Publish: true, Subscribe: true, TTL: h.cfg.TokenTTL})
	if err != nil {
		return err
	}
	if err := auth.Audit(ctx, h.cfg.Service.pool, auth.Entry{Action: "room_token", RecordType: "consult", RecordID: RoomID(id),
		Facility: con.ToFacility.Code}); err != nil {
		return err
	}
	ice := []ICEServer{}
	if h.cfg.TURN != nil {
		ice = append(ice, h.cfg.TURN.Credentials(p.Username, h.cfg.TokenTTL))
	}
	return c.JSON(http.StatusOK, TokenResponse{Token: tok, ExpiresIn: int(time.Until(exp).Round(time.Second) / time.Second),
		UserID: p.Username, ICEServers: ice, SignalURL: "/api/v1/consults/" + RoomID(id) + "/signal"})
}

// ConsentRequest is the body of POST /consults/{id}/recording.
type ConsentRequest struct {
	Consent bool `json:"consent"`
}

func (h *Handler) consent(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	var req ConsentRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	if !req.Consent {
		return apperr.Field("consent", "must be true (withholding consent needs no request)")
	}
	res, err := h.cfg.Service.Consent(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// RecordingsResponse is the answer of GET /consults/{id}/recordings.
type RecordingsResponse struct {
	Recordings []Recording `json:"recordings"`
}

func (h *Handler) recordings(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	rs, err := h.cfg.Service.Recordings(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, RecordingsResponse{Recordings: rs})
}

func (h *Handler) download(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	rid, err := strconv.ParseInt(c.Param("rid"), 10, 64)
	if err != nil || rid <= 0 {
		return apperr.E(apperr.NotFound, "recording not found")
	}
	path, ct, err := h.cfg.Service.RecordingPath(c.Request().Context(), p, id, rid, h.cfg.RecordDir)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentType, ct)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Attachment(path, "consult-"+RoomID(id)+"-"+strconv.FormatInt(rid, 10)+map[bool]string{true: ".ivf", false: ".ogg"}[ct == "video/x-ivf"])
}

func (h *Handler) referral(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	var req ReferralRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	r, created, err := h.cfg.Service.OpenReferral(c.Request().Context(), p, id, req, c.Request().Header.Get(referral.IdempotencyHeader))
	if err != nil {
		return err
	}
	if created {
		return c.JSON(http.StatusCreated, r)
	}
	return c.JSON(http.StatusOK, r)
}

func (h *Handler) fee(c echo.Context) error {
	p, id, err := h.call(c)
	if err != nil {
		return err
	}
	l, err := h.cfg.Service.Fee(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}
