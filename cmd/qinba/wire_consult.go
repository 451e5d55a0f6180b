package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/consult"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/referral"
)

// consultEnv are the media settings, read from the environment until they
// become serve flags (Config.Consult):
//
//	QINBA_TURN_ADDR         UDP listen address of the embedded TURN server, e.g. 0.0.0.0:3478 (empty: no TURN)
//	QINBA_TURN_SECRET       TURN REST shared secret, at least 16 bytes (or QINBA_TURN_SECRET_FILE)
//	QINBA_RECORDINGS_DIR    where recordings go (default <var dir>/recordings; "off": recording disabled)
//	QINBA_MEDIA_LOOPBACK=1  gather only loopback ICE candidates (tests, a single-host demo)
//	QINBA_PUBLIC_IP         the address clients reach the media and TURN server on (1:1 NAT)
type consultEnv struct {
	TURNAddr, TURNSecret, RecordDir, PublicIP string
	Loopback                                  bool
}

func readConsultEnv(varDir string) (consultEnv, error) {
	e := consultEnv{
		TURNAddr:  strings.TrimSpace(os.Getenv("QINBA_TURN_ADDR")),
		RecordDir: strings.TrimSpace(os.Getenv("QINBA_RECORDINGS_DIR")),
		PublicIP:  strings.TrimSpace(os.Getenv("QINBA_PUBLIC_IP")),
		Loopback:  os.Getenv("QINBA_MEDIA_LOOPBACK") == "1",
	}
	e.TURNSecret = os.Getenv("QINBA_TURN_SECRET")
	if f := os.Getenv("QINBA_TURN_SECRET_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return e, fmt.Errorf("QINBA_TURN_SECRET_FILE: %w", err)
		}
		e.TURNSecret = strings.TrimSpace(string(b))
	}
	switch {
	case e.RecordDir == "off":
		e.RecordDir = ""
	case e.RecordDir == "" && varDir != "":
		e.RecordDir = filepath.Join(varDir, "recordings")
	}
	if e.PublicIP != "" && net.ParseIP(e.PublicIP) == nil {
		return e, fmt.Errorf("QINBA_PUBLIC_IP %q is not an IP address", e.PublicIP)
	}
	if e.TURNAddr != "" && len(e.TURNSecret) < 16 {
		return e, errors.New("QINBA_TURN_ADDR needs QINBA_TURN_SECRET (or _FILE) of at least 16 bytes")
	}
	return e, nil
}

func init() {
	registerMount(mount{name: "consult", order: 50, fn: func(a *App) error {
		if a.Auth == nil {
			return errors.New("consults need the auth service (mount auth first)")
		}
		env, err := readConsultEnv(a.Config.VarDir)
		if err != nil {
			return err
		}
		if env.RecordDir != "" {
			if err := os.MkdirAll(env.RecordDir, 0o700); err != nil {
				return fmt.Errorf("recordings dir: %w", err)
			}
		}
		// The consult's one-click referral goes through the referral
		// service (a second instance on the same pool; its hub and
		// escalator run in the referral mount).
		policy := a.Config.Referral
		if policy.AcceptWithin == nil {
			policy = referral.DefaultPolicy()
		}
		refs, err := referral.NewService(a.Pool, a.Log, policy, referral.SystemClock{})
		if err != nil {
			return err
		}
		svc, err := consult.NewService(consult.ServiceConfig{Pool: a.Pool, Log: a.Log, Referrals: refs})
		if err != nil {
			return err
		}
		mc := consult.MediaConfig{LoopbackOnly: env.Loopback, Logger: a.Log}
		if env.PublicIP != "" {
			mc.NAT1To1IPs = []string{env.PublicIP}
		}
		media, err := consult.NewMedia(mc)
		if err != nil {
			return err
		}
		tokens, err := consult.NewRoomTokens(consult.RoomTokensConfig{Keys: a.Auth.Keys(), Issuer: a.Config.Issuer})
		if err != nil {
			return err
		}
		sfu, err := consult.NewSFU(consult.SFUConfig{Media: media, Tokens: tokens, RecordDir: env.RecordDir, Hooks: svc.Hooks(), Logger: a.Log})
		if err != nil {
			return err
		}
		a.OnClose(sfu.Close)
		svc.SetRooms(sfu)
		hc := consult.HandlerConfig{Service: svc, Tokens: tokens, RecordDir: env.RecordDir}
		if env.TURNAddr != "" {
			turn, err := newTURN(a, env)
			if err != nil {
				return err
			}
			hc.TURN = turn
		}
		consult.NewHandler(hc).Routes(a.API)
		// The signalling WebSocket authenticates with the room token, not
		// the access token, so it sits outside the API group.
		a.Echo.GET("/api/v1/consults/:id/signal", sfu.SignalHandler(), bearerChallenge)
		return a.AddOpenAPI(consult.OpenAPI)
	}})
}

func newTURN(a *App, env consultEnv) (*consult.TURNServer, error) {
	public := env.PublicIP
	if public == "" {
		host, _, err := net.SplitHostPort(env.TURNAddr)
		if err != nil {
			return nil, fmt.Errorf("QINBA_TURN_ADDR: %w", err)
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			return nil, errors.New("QINBA_TURN_ADDR listens on every address: set QINBA_PUBLIC_IP")
		}
		public = host
	}
	turn, err := consult.NewTURNServer(consult.TURNConfig{UDPAddr: env.TURNAddr, PublicIP: public, Secret: []byte(env.TURNSecret),
		// Relay only to the media server itself.
		PeerIPs: []string{public}, Logger: a.Log})
	if err != nil {
		return nil, err
	}
	a.OnClose(func(context.Context) error { return turn.Close() })
	return turn, nil
}

// bearerChallenge adds the RFC 6750 challenge to the signalling route's
// 401s, like every other /api/v1 route's.
func bearerChallenge(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if apperr.Is(err, apperr.Unauthenticated) && !c.Response().Committed {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="qinba-consult", error="invalid_token"`)
		}
		return err
	}
}
