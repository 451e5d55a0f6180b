package main

import (
	"context"
	"errors"
	"flag"
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

// ConsultConfig is the consult media settings: serve's --turn-*,
// --recordings-dir, --public-ip and --media-loopback flags.
type ConsultConfig struct {
	// TURNAddr is the UDP (and TCP) listen address of the embedded TURN
	// server, e.g. 0.0.0.0:3478; empty: no TURN.
	TURNAddr string
	// TURNSecret is the TURN REST shared secret (at least 16 bytes). It
	// comes from the environment or a file, never from a flag (a flag shows
	// in the process list).
	TURNSecret string
	// RecordDir is where recordings go; empty: recording disabled.
	RecordDir string
	// PublicIP is the address clients reach the media and TURN server on
	// (1:1 NAT); empty: the host's own addresses.
	PublicIP string
	// MediaLoopback gathers only loopback ICE candidates (tests, a
	// single-host demo).
	MediaLoopback bool
}

// RegisterFlags registers the consult flags on fs, with environment
// fallbacks read through env. The returned function resolves what depends
// on the other flags (the secret file, the var dir); serve calls it before
// NewApp, which checks the whole (Config.Validate).
func (c *ConsultConfig) RegisterFlags(fs *flag.FlagSet, env *Env) func(varDir string) error {
	fs.StringVar(&c.TURNAddr, "turn-addr", env.Getenv("QINBA_TURN_ADDR"),
		"listen address (UDP and TCP) of the embedded TURN server, e.g. 0.0.0.0:3478; empty: no TURN (env QINBA_TURN_ADDR)")
	secretFile := fs.String("turn-secret-file", env.Getenv("QINBA_TURN_SECRET_FILE"),
		"file holding the TURN shared secret, at least 16 bytes (env QINBA_TURN_SECRET_FILE; or the secret itself in QINBA_TURN_SECRET)")
	recordDir := fs.String("recordings-dir", env.Getenv("QINBA_RECORDINGS_DIR"),
		`where consult recordings go; "off" disables recording (env QINBA_RECORDINGS_DIR; default <var>/recordings)`)
	fs.StringVar(&c.PublicIP, "public-ip", env.Getenv("QINBA_PUBLIC_IP"),
		"the address clients reach the media and TURN server on, behind 1:1 NAT (env QINBA_PUBLIC_IP)")
	fs.BoolVar(&c.MediaLoopback, "media-loopback", env.Getenv("QINBA_MEDIA_LOOPBACK") == "1",
		"gather only loopback ICE candidates: a single-host demo or tests (env QINBA_MEDIA_LOOPBACK=1)")
	return func(varDir string) error {
		c.TURNSecret = env.Getenv("QINBA_TURN_SECRET")
		if *secretFile != "" {
			b, err := os.ReadFile(*secretFile)
			if err != nil {
				return fmt.Errorf("--turn-secret-file: %w", err)
			}
			c.TURNSecret = strings.TrimSpace(string(b))
		}
		switch dir := strings.TrimSpace(*recordDir); {
		case dir == "off":
			c.RecordDir = ""
		case dir == "" && varDir != "":
			c.RecordDir = filepath.Join(varDir, "recordings")
		default:
			c.RecordDir = dir
		}
		return nil
	}
}

// Validate checks the settings.
func (c *ConsultConfig) Validate() error {
	if c.PublicIP != "" && net.ParseIP(c.PublicIP) == nil {
		return fmt.Errorf("--public-ip %q is not an IP address", c.PublicIP)
	}
	if c.TURNAddr != "" {
		host, _, err := net.SplitHostPort(c.TURNAddr)
		if err != nil {
			return fmt.Errorf("--turn-addr %q: %v", c.TURNAddr, err)
		}
		if len(c.TURNSecret) < 16 {
			return errors.New("--turn-addr needs a TURN secret of at least 16 bytes (--turn-secret-file or QINBA_TURN_SECRET)")
		}
		if ip := net.ParseIP(host); c.PublicIP == "" && (ip == nil || ip.IsUnspecified()) {
			return errors.New("--turn-addr listens on every address: set --public-ip")
		}
	}
	return nil
}

func init() {
	registerMount(mount{name: "consult", order: 50, fn: func(a *App) error {
		if a.Auth == nil {
			return errors.New("consults need the auth service (mount auth first)")
		}
		cc := a.Config.Consult // checked by Config.Validate
		if cc.RecordDir != "" {
			if err := os.MkdirAll(cc.RecordDir, 0o700); err != nil {
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
		mc := consult.MediaConfig{LoopbackOnly: cc.MediaLoopback, Logger: a.Log, Metrics: a.Registry}
		if cc.PublicIP != "" {
			mc.NAT1To1IPs = []string{cc.PublicIP}
		}
		media, err := consult.NewMedia(mc)
		if err != nil {
			return err
		}
		tokens, err := consult.NewRoomTokens(consult.RoomTokensConfig{Keys: a.Auth.Keys(), Issuer: a.Config.Issuer})
		if err != nil {
			return err
		}
		sfu, err := consult.NewSFU(consult.SFUConfig{Media: media, Tokens: tokens, RecordDir: cc.RecordDir, Hooks: svc.Hooks(), Logger: a.Log})
		if err != nil {
			return err
		}
		a.OnClose(sfu.Close)
		svc.SetRooms(sfu)
		hc := consult.HandlerConfig{Service: svc, Tokens: tokens, RecordDir: cc.RecordDir}
		if cc.TURNAddr != "" {
			turn, err := newTURN(a, cc)
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

func newTURN(a *App, cc ConsultConfig) (*consult.TURNServer, error) {
	public := cc.PublicIP
	if public == "" {
		public, _, _ = net.SplitHostPort(cc.TURNAddr) // checked by Validate
	}
	turn, err := consult.NewTURNServer(consult.TURNConfig{UDPAddr: cc.TURNAddr, PublicIP: public, Secret: []byte(cc.TURNSecret),
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
