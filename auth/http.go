package auth

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// MetaMiddleware puts the request's RequestMeta (client IP as echo's IP
// extractor sees it, the X-Request-Id the request-id middleware set, the
// user agent) in its context, for the audit log. Use it on the echo
// instance so public routes have it too.
func MetaMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ua := c.Request().UserAgent()
		if len(ua) > 256 {
			ua = ua[:256]
		}
		if !utf8.ValidString(ua) {
			ua = strings.ToValidUTF8(ua, "?")
		}
		m := RequestMeta{IP: c.RealIP(), RequestID: cleanRequestID(c.Response().Header().Get(echo.HeaderXRequestID)), UserAgent: ua}
		c.SetRequest(c.Request().WithContext(WithMeta(c.Request().Context(), m)))
		return next(c)
	}
}

// cleanRequestID bounds a request id for the audit log: echo keeps an
// X-Request-Id the client sent, so it is the client's text.
func cleanRequestID(id string) string {
	if len(id) > 64 {
		id = id[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r == ':' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return -1
	}, id)
}

// Authenticate is the access-token middleware: a valid Bearer token puts
// the principal in the request context (see Current); anything else is a
// 401 with a WWW-Authenticate challenge (RFC 6750).
func (s *Service) Authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, ok := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
		if !ok {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="qinba"`)
			return apperr.E(apperr.Unauthenticated, "authentication required")
		}
		ctx := c.Request().Context()
		p, err := s.VerifyAccessToken(ctx, raw)
		if err != nil {
			if apperr.Is(err, apperr.Unauthenticated) {
				if ae, _ := apperr.As(err); ae.Err != nil {
					s.cfg.Log.InfoContext(ctx, "access token refused", "reason", ae.Err.Error(), "ip", MetaFrom(ctx).IP)
				}
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="qinba", error="invalid_token"`)
			}
			return err
		}
		c.SetRequest(c.Request().WithContext(WithPrincipal(ctx, p)))
		return next(c)
	}
}

func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Routes mounts the auth routes: login and refresh on public (no token),
// logout, me, users and audit on api (behind Authenticate).
func (s *Service) Routes(public, api *echo.Group) {
	public.POST("/auth/login", s.login)
	public.POST("/auth/refresh", s.refresh)
	api.POST("/auth/logout", s.logout)
	api.GET("/auth/me", s.me)

	admin := Allow(s.pool, s.cfg.Log, RoleAdmin)
	api.GET("/users", s.listUsers, admin)
	api.POST("/users", s.createUser, admin)
	api.POST("/users/:username/disable", s.disableUser, admin)

	api.GET("/audit", s.queryAudit, Allow(s.pool, s.cfg.Log, RoleAuditor))
}

// JWKS serves the published public keys (GET /.well-known/jwks.json).
func (s *Service) JWKS(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.JSON(http.StatusOK, s.keys.JWKS())
}

// LoginRequest is the body of POST /auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// RefreshRequest is the body of POST /auth/refresh and /auth/logout.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func noStore(c echo.Context) {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
}

// withRetryAfter sets Retry-After from a rate-limit error's details.
func withRetryAfter(c echo.Context, err error) error {
	if ae, ok := apperr.As(err); ok && ae.Code == apperr.RateLimited {
		if secs, ok := ae.Details["retry_after_seconds"].(int); ok {
			c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		}
	}
	return err
}

func (s *Service) login(c echo.Context) error {
	noStore(c)
	var req LoginRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	f := apperr.Fields{}
	if strings.TrimSpace(req.Username) == "" {
		f.Add("username", "is required")
	}
	if req.Password == "" {
		f.Add("password", "is required")
	} else if len(req.Password) > 4*MaxPasswordLen {
		f.Add("password", "too long")
	}
	if err := f.Err(); err != nil {
		return err
	}
	resp, err := s.Login(c.Request().Context(), req.Username, req.Password)
	if err != nil {
		return withRetryAfter(c, err)
	}
	return c.JSON(http.StatusOK, resp)
}

func (s *Service) refresh(c echo.Context) error {
	noStore(c)
	var req RefreshRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	if req.RefreshToken == "" {
		return apperr.Field("refresh_token", "is required")
	}
	if ok, wait := s.ipLimit.take("refresh " + c.RealIP()); !ok {
		return withRetryAfter(c, rateLimited(wait, "too many refreshes from your address; try again in %s", humanWait(wait)))
	}
	resp, err := s.Refresh(c.Request().Context(), req.RefreshToken)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

func (s *Service) logout(c echo.Context) error {
	p, err := Current(c)
	if err != nil {
		return err
	}
	var req RefreshRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	if req.RefreshToken == "" {
		return apperr.Field("refresh_token", "is required")
	}
	if err := s.Logout(c.Request().Context(), p, req.RefreshToken); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Service) me(c echo.Context) error {
	p, err := Current(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// AuditResponse is the body of GET /api/v1/audit. NextBefore, when set,
// is the before= value of the next (older) page.
type AuditResponse struct {
	Entries    []AuditRecord `json:"entries"`
	NextBefore *int64        `json:"next_before"`
}

func (s *Service) queryAudit(c echo.Context) error {
	f, err := ParseAuditFilter(c.QueryParams())
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	entries, err := QueryAudit(ctx, s.pool, f)
	if err != nil {
		return err
	}
	// Reading the audit log is itself audited.
	if err := Audit(ctx, s.pool, Entry{Action: "read", RecordType: "audit_log",
		Detail: map[string]any{"query": c.QueryString(), "returned": len(entries)}}); err != nil {
		return err
	}
	resp := AuditResponse{Entries: entries}
	if len(entries) == f.Limit {
		last := entries[len(entries)-1].ID
		resp.NextBefore = &last
	}
	return c.JSON(http.StatusOK, resp)
}
