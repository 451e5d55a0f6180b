package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// The cookies of a browser session.
const (
	AccessCookie  = "qinba_at"   // access token; HttpOnly, Path=/
	RefreshCookie = "qinba_rt"   // refresh token; HttpOnly, Path=/web/session
	CSRFCookie    = "qinba_csrf" // double-submit token; readable by scripts
	LangCookie    = "qinba_lang" // "en" or "zh-CN"; set by the page
	// CSRFHeader carries the CSRF cookie's value on unsafe requests.
	CSRFHeader = "X-CSRF-Token"
	// SessionPath is the refresh cookie's path: only the session routes see it.
	SessionPath = "/web/session"
)

// Tokens are what a login or a refresh gives.
type Tokens struct {
	Access         string
	AccessExpires  time.Time
	Refresh        string
	RefreshExpires time.Time
	// User is shown to the page after login (the principal, as JSON).
	User any
}

// Authenticator is the part of the auth service the session routes use.
// Errors are *apperr.Error values (401 for bad credentials or a spent
// refresh token, 429 for a locked account) and are passed to the client.
type Authenticator interface {
	Login(ctx context.Context, username, password string) (Tokens, error)
	Refresh(ctx context.Context, refreshToken string) (Tokens, error)
	// Logout ends the session of refreshToken; accessToken (perhaps
	// expired) names whose session it is.
	Logout(ctx context.Context, accessToken, refreshToken string) error
}

// Options configure the UI.
type Options struct {
	Auth Authenticator
	Log  *slog.Logger
	// Secure marks the cookies Secure (the server speaks TLS). A request
	// that arrived over TLS gets Secure cookies regardless.
	Secure bool
	// Context, when set, builds the context handed to Auth from the request
	// (e.g. adding the client's IP for the audit log).
	Context func(c echo.Context) context.Context
	// RefreshReuse is how long a just-rotated refresh token still yields
	// the tokens it was rotated into (default 20 s). Two tabs that refresh
	// at the same moment send the same cookie; without this the second
	// would look like a replayed token and end the session.
	RefreshReuse time.Duration
}

// UI serves the pages, assets and session routes.
type UI struct {
	opts   Options
	assets *assets

	mu     sync.Mutex
	recent map[[32]byte]*rotation // refresh token hash → its rotation
}

type rotation struct {
	done   chan struct{}
	tokens Tokens
	err    error
	at     time.Time
}

// New builds the UI.
func New(opts Options) (*UI, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.RefreshReuse == 0 {
		opts.RefreshReuse = 20 * time.Second
	}
	a, err := loadAssets()
	if err != nil {
		return nil, err
	}
	return &UI{opts: opts, assets: a, recent: map[[32]byte]*rotation{}}, nil
}

// Routes mounts the shell page, the assets and the session routes on e.
func (u *UI) Routes(e *echo.Echo) {
	e.GET("/", u.serveShell)
	e.HEAD("/", u.serveShell)
	e.GET("/index.html", u.serveShell)
	e.GET("/assets/:v/*", u.serveAsset)
	e.HEAD("/assets/:v/*", u.serveAsset)
	e.GET("/favicon.ico", func(c echo.Context) error {
		return c.Redirect(http.StatusMovedPermanently, "/assets/"+u.assets.version+"/icon.svg")
	})
	e.POST(SessionPath, u.login)
	e.DELETE(SessionPath, u.logout)
	e.POST(SessionPath+"/refresh", u.refresh)
}

func (u *UI) ctx(c echo.Context) context.Context {
	if u.opts.Context != nil {
		return u.opts.Context(c)
	}
	return c.Request().Context()
}

// loginRequest is the body of POST /web/session (JSON or a form).
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// sessionResponse is the body of a successful login or refresh.
type sessionResponse struct {
	User          any       `json:"user,omitempty"`
	AccessExpires time.Time `json:"access_expires"`
}

func (u *UI) login(c echo.Context) error {
	if err := sameOrigin(c.Request()); err != nil {
		return err
	}
	var req loginRequest
	form := false
	ct := strings.ToLower(c.Request().Header.Get(echo.HeaderContentType))
	switch {
	case strings.HasPrefix(ct, echo.MIMEApplicationForm):
		form = true
		req.Username, req.Password = c.FormValue("username"), c.FormValue("password")
	default:
		if err := httpx.BindJSON(c, &req); err != nil {
			return err
		}
	}
	f := apperr.Fields{}
	if strings.TrimSpace(req.Username) == "" {
		f.Add("username", "is required")
	}
	if req.Password == "" {
		f.Add("password", "is required")
	}
	if err := f.Err(); err != nil {
		return err
	}
	t, err := u.opts.Auth.Login(u.ctx(c), req.Username, req.Password)
	if err != nil {
		return err
	}
	u.setCookies(c, t, newCSRF())
	if form {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	return c.JSON(http.StatusOK, sessionResponse{User: t.User, AccessExpires: t.AccessExpires})
}

func (u *UI) refresh(c echo.Context) error {
	if err := checkCSRF(c.Request()); err != nil {
		return err
	}
	rt, err := c.Cookie(RefreshCookie)
	if err != nil || rt.Value == "" {
		u.clearCookies(c)
		return apperr.E(apperr.Unauthenticated, "no session; log in again")
	}
	t, err := u.rotate(u.ctx(c), rt.Value)
	if err != nil {
		if ae, ok := apperr.As(err); ok && ae.Code == apperr.Unauthenticated {
			u.clearCookies(c)
		}
		return err
	}
	csrf, _ := c.Cookie(CSRFCookie)
	u.setCookies(c, t, csrf.Value)
	return c.JSON(http.StatusOK, sessionResponse{User: t.User, AccessExpires: t.AccessExpires})
}

// rotate refreshes rt once: concurrent or repeated presentations of the
// same token within RefreshReuse share the one rotation's result.
func (u *UI) rotate(ctx context.Context, rt string) (Tokens, error) {
	key := sha256.Sum256([]byte(rt))
	now := time.Now()
	u.mu.Lock()
	for k, r := range u.recent {
		select {
		case <-r.done:
			if now.Sub(r.at) > u.opts.RefreshReuse {
				delete(u.recent, k)
			}
		default:
		}
	}
	r, ok := u.recent[key]
	if !ok {
		r = &rotation{done: make(chan struct{})}
		u.recent[key] = r
	}
	u.mu.Unlock()
	if ok {
		select {
		case <-r.done:
			return r.tokens, r.err
		case <-ctx.Done():
			return Tokens{}, apperr.Wrap(apperr.Unavailable, ctx.Err(), "request cancelled")
		}
	}
	// The rotation must finish even if this client goes away: others wait.
	r.tokens, r.err = u.opts.Auth.Refresh(context.WithoutCancel(ctx), rt)
	u.mu.Lock()
	r.at = time.Now()
	if r.err != nil {
		delete(u.recent, key) // an error is not cached: a retry asks again
	}
	u.mu.Unlock()
	close(r.done)
	return r.tokens, r.err
}

func (u *UI) logout(c echo.Context) error {
	if err := checkCSRF(c.Request()); err != nil {
		return err
	}
	if rt, err := c.Cookie(RefreshCookie); err == nil && rt.Value != "" {
		at := ""
		if ck, err := c.Cookie(AccessCookie); err == nil {
			at = ck.Value
		}
		if err := u.opts.Auth.Logout(u.ctx(c), at, rt.Value); err != nil {
			if ae, ok := apperr.As(err); !ok || ae.Code != apperr.Unauthenticated {
				return err
			}
		}
	}
	u.clearCookies(c)
	return c.NoContent(http.StatusNoContent)
}

func (u *UI) secure(c echo.Context) bool { return u.opts.Secure || c.Request().TLS != nil }

func (u *UI) setCookies(c echo.Context, t Tokens, csrf string) {
	if csrf == "" {
		csrf = newCSRF()
	}
	sec := u.secure(c)
	maxAge := func(until time.Time) int { return max(1, int(time.Until(until).Seconds())) }
	// The access cookie lives as long as the session, so an expired token
	// is still presented and answered 401, which starts a silent refresh.
	c.SetCookie(&http.Cookie{Name: AccessCookie, Value: t.Access, Path: "/", MaxAge: maxAge(t.RefreshExpires),
		HttpOnly: true, Secure: sec, SameSite: http.SameSiteStrictMode})
	c.SetCookie(&http.Cookie{Name: RefreshCookie, Value: t.Refresh, Path: SessionPath, MaxAge: maxAge(t.RefreshExpires),
		HttpOnly: true, Secure: sec, SameSite: http.SameSiteStrictMode})
	c.SetCookie(&http.Cookie{Name: CSRFCookie, Value: csrf, Path: "/", MaxAge: maxAge(t.RefreshExpires),
		Secure: sec, SameSite: http.SameSiteStrictMode})
	c.Response().Header().Set("Cache-Control", "no-store")
}

func (u *UI) clearCookies(c echo.Context) {
	sec := u.secure(c)
	for _, ck := range []struct {
		name, path string
		httpOnly   bool
	}{{AccessCookie, "/", true}, {RefreshCookie, SessionPath, true}, {CSRFCookie, "/", false}} {
		c.SetCookie(&http.Cookie{Name: ck.name, Value: "", Path: ck.path, MaxAge: -1, HttpOnly: ck.httpOnly,
			Secure: sec, SameSite: http.SameSiteStrictMode})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
}

func newCSRF() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkCSRF is the double-submit check: the X-CSRF-Token header must equal
// the qinba_csrf cookie (compared in constant time), and a cross-origin
// Origin header is refused.
func checkCSRF(r *http.Request) error {
	if err := sameOrigin(r); err != nil {
		return err
	}
	ck, err := r.Cookie(CSRFCookie)
	h := r.Header.Get(CSRFHeader)
	if err != nil || ck.Value == "" || h == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(h)) != 1 {
		return apperr.E(apperr.Forbidden, "missing or wrong CSRF token; reload the page")
	}
	return nil
}

// sameOrigin refuses a request whose Origin header names another host.
// (Browsers send Origin on unsafe requests and WebSocket handshakes.)
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	ou, err := url.Parse(o)
	if err != nil || !strings.EqualFold(ou.Host, r.Host) {
		return apperr.E(apperr.Forbidden, "cross-origin request refused")
	}
	return nil
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// CookieAuth is a pre-routing middleware for /api/v1: a request that has no
// Authorization header but carries the access cookie is checked for CSRF
// (unsafe methods: double submit; WebSocket handshakes: same origin) and
// then given "Authorization: Bearer <cookie>", so the API's normal token
// check does the rest.
func CookieAuth() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if !strings.HasPrefix(r.URL.Path, "/api/v1/") || r.Header.Get(echo.HeaderAuthorization) != "" {
				return next(c)
			}
			ck, err := r.Cookie(AccessCookie)
			if err != nil || ck.Value == "" {
				return next(c)
			}
			switch {
			case unsafeMethod(r.Method):
				if err := checkCSRF(r); err != nil {
					return err
				}
			case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
				if err := sameOrigin(r); err != nil {
					return err
				}
			}
			r.Header.Set(echo.HeaderAuthorization, "Bearer "+ck.Value)
			return next(c)
		}
	}
}
