package main

import (
	"context"
	"errors"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/web"
)

func init() {
	registerMount(mount{name: "web", order: 90, fn: func(a *App) error {
		if a.Auth == nil {
			return errors.New("the web UI needs the auth service (mount auth first)")
		}
		ui, err := web.New(web.Options{Auth: webAuth{a.Auth}, Log: a.Log, Secure: a.Config.TLSCert != ""})
		if err != nil {
			return err
		}
		// Cookie sessions become bearer tokens before routing, once CSRF is checked.
		a.Echo.Pre(web.CookieAuth())
		ui.Routes(a.Echo)
		return nil
	}})
}

// webAuth adapts the auth service to the UI's cookie sessions.
type webAuth struct{ s *auth.Service }

func (w webAuth) tokens(ctx context.Context, r auth.TokenResponse) (web.Tokens, error) {
	p, err := w.s.VerifyAccessToken(ctx, r.AccessToken)
	if err != nil {
		return web.Tokens{}, err
	}
	now := time.Now()
	return web.Tokens{
		Access: r.AccessToken, AccessExpires: now.Add(time.Duration(r.ExpiresIn) * time.Second),
		// The session's absolute limit; the server refuses an idle or
		// revoked token earlier, whatever the cookie's lifetime.
		Refresh: r.RefreshToken, RefreshExpires: now.Add(auth.DefaultRefreshMaxTTL),
		User: p,
	}, nil
}

func (w webAuth) Login(ctx context.Context, username, password string) (web.Tokens, error) {
	r, err := w.s.Login(ctx, username, password)
	if err != nil {
		return web.Tokens{}, err
	}
	return w.tokens(ctx, r)
}

func (w webAuth) Refresh(ctx context.Context, rt string) (web.Tokens, error) {
	r, err := w.s.Refresh(ctx, rt)
	if err != nil {
		return web.Tokens{}, err
	}
	return w.tokens(ctx, r)
}

// Logout revokes the refresh token's session. Logout needs the principal:
// from the access token, or, when that has expired, from a last refresh.
func (w webAuth) Logout(ctx context.Context, at, rt string) error {
	p, err := w.s.VerifyAccessToken(ctx, at)
	if err != nil {
		if !apperr.Is(err, apperr.Unauthenticated) {
			return err
		}
		r, err := w.s.Refresh(ctx, rt)
		if err != nil {
			return nil // the session is already over
		}
		if p, err = w.s.VerifyAccessToken(ctx, r.AccessToken); err != nil {
			return err
		}
		rt = r.RefreshToken
	}
	return w.s.Logout(auth.WithPrincipal(ctx, p), p, rt)
}
