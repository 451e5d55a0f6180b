package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
	"github.com/qinba/qinba/migrations"
	"github.com/qinba/qinba/referral"
)

// Config is the typed configuration of the server.
type Config struct {
	Addr            string
	BodyLimit       string
	ShutdownTimeout time.Duration
	TLSCert         string
	TLSKey          string
	VarDir          string
	// Issuer is the JWT issuer and the public base URL of the server.
	Issuer string
	// Referral holds the referral deadlines and intervals; the zero value
	// means referral.DefaultPolicy().
	Referral referral.Policy
	// Consult holds the consult media settings (TURN, recordings, ICE).
	Consult ConsultConfig
	// PolicyDir holds settlement policy files besides the embedded ones
	// (empty: the embedded ones only).
	PolicyDir string
}

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--addr %q: %v", c.Addr, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("--shutdown-timeout must be positive")
	}
	if err := c.Consult.Validate(); err != nil {
		return err
	}
	return nil
}

// App is the running server: its pool, echo instance and the capabilities
// wired on it. Capability wiring files add routes through mounts.
type App struct {
	Config   Config
	Log      *slog.Logger
	Pool     *pgxpool.Pool
	Echo     *echo.Echo
	Registry *prometheus.Registry

	// Public is /api/v1 without authentication (login, refresh).
	Public *echo.Group
	// API is /api/v1 behind the access-token check.
	API *echo.Group
	// Authn authenticates a request (set by the auth wiring). Until it is
	// set every API request is refused.
	Authn echo.MiddlewareFunc
	// Auth is the auth service (set by the auth wiring, order 0): Auth.Keys()
	// is consult's KeySource, Auth.Scope() the facility-scope checker.
	Auth *auth.Service

	// Background work started by capabilities (escalation, stream
	// listeners); stopped on Close.
	background []func(ctx context.Context) error
	closers    []func(ctx context.Context) error
	listener   net.Listener
	openapi    map[string]any
	// routeLimits holds a per-user rate limit for some routes, keyed by
	// "METHOD /route/pattern" (see LimitRoute).
	routeLimits map[string]*httpx.Limiter
}

// mount wires one capability onto an App. Lower order runs first (auth is 0).
type mount struct {
	name  string
	order int
	fn    func(a *App) error
}

var mounts []mount

func registerMount(m mount) { mounts = append(mounts, m) }

// NewApp builds the server around an open pool: middleware, health,
// metrics, OpenAPI and every capability's routes.
func NewApp(cfg Config, log *slog.Logger, pool *pgxpool.Pool) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(newPoolCollector(pool))
	a := &App{Config: cfg, Log: log, Pool: pool, Registry: reg}
	a.Echo = httpx.NewEcho(log, httpx.NewMetrics(reg), cfg.BodyLimit)
	a.Echo.Use(httpx.SecurityHeaders(cfg.TLSCert != ""))
	if err := a.AddOpenAPI([]byte(`{}`)); err != nil {
		return nil, err
	}
	a.Echo.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	a.Echo.GET("/readyz", a.ready)
	a.Echo.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), loopbackOnly)
	a.Echo.GET("/api/openapi.json", a.serveOpenAPI)
	a.Public = a.Echo.Group("/api/v1")
	a.routeLimits = map[string]*httpx.Limiter{}
	a.API = a.Echo.Group("/api/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if a.Authn == nil {
				return apperr.E(apperr.Unauthenticated, "authentication required")
			}
			return a.Authn(next)(c)
		}
	}, a.rateLimit)
	ms := slices.Clone(mounts)
	slices.SortStableFunc(ms, func(x, y mount) int { return x.order - y.order })
	for _, m := range ms {
		if err := m.fn(a); err != nil {
			return nil, fmt.Errorf("wire %s: %w", m.name, err)
		}
	}
	return a, nil
}

// LimitRoute gives a route (method and echo pattern, e.g. "POST",
// "/api/v1/consults/:id/token") a per-user rate limit. Call it while wiring.
func (a *App) LimitRoute(method, path string, l *httpx.Limiter) {
	a.routeLimits[method+" "+path] = l
}

// rateLimit applies the route's limit, if any, per authenticated user.
func (a *App) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if l := a.routeLimits[c.Request().Method+" "+c.Path()]; l != nil {
			key := c.RealIP()
			if p := auth.PrincipalFrom(c.Request().Context()); p != nil {
				key = "user:" + p.Username
			}
			if err := l.Allow(key); err != nil {
				return err
			}
		}
		return next(c)
	}
}

func (a *App) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := a.Pool.Ping(ctx); err != nil {
		return apperr.Wrap(apperr.Unavailable, err, "database unreachable")
	}
	if err := migrations.Check(ctx, a.Pool); err != nil {
		return apperr.Wrap(apperr.Unavailable, err, "database schema is not current")
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func loopbackOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return apperr.E(apperr.NotFound, "no such route")
		}
		return next(c)
	}
}

// OnBackground registers work that runs while the server runs; it must
// return when ctx is cancelled.
func (a *App) OnBackground(fn func(ctx context.Context) error) {
	a.background = append(a.background, fn)
}

// OnClose registers a cleanup run at shutdown, in reverse order.
func (a *App) OnClose(fn func(ctx context.Context) error) { a.closers = append(a.closers, fn) }

// Listen binds the configured address (":0" picks a port; see Addr).
func (a *App) Listen() error {
	l, err := net.Listen("tcp", a.Config.Addr)
	if err != nil {
		return err
	}
	a.listener = l
	return nil
}

// Addr is the bound address after Listen.
func (a *App) Addr() string { return a.listener.Addr().String() }

// Run serves until ctx is cancelled, then shuts down gracefully within the
// configured deadline.
func (a *App) Run(ctx context.Context) error {
	if a.listener == nil {
		if err := a.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           a.Echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	bgCtx, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, len(a.background))
	for _, fn := range a.background {
		go func() { done <- fn(bgCtx) }()
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if a.Config.TLSCert != "" {
			err = srv.ServeTLS(a.listener, a.Config.TLSCert, a.Config.TLSKey)
		} else {
			err = srv.Serve(a.listener)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Config.ShutdownTimeout)
	defer cancel()
	bgCancel()
	shutErr := srv.Shutdown(sctx)
	if errors.Is(shutErr, context.DeadlineExceeded) {
		// The deadline is the promise: connections still busy now (a
		// stream a client keeps open) are closed, and that is not a failure.
		a.Log.Warn("shutdown deadline reached: closing the remaining connections", "timeout", a.Config.ShutdownTimeout)
		shutErr = srv.Close()
	}
	for range a.background {
		select {
		case <-done:
		case <-sctx.Done():
		}
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](sctx); err != nil {
			a.Log.Warn("shutdown", "err", err)
		}
	}
	return errors.Join(serveErr, shutErr)
}

// poolCollector exports pgxpool statistics.
type poolCollector struct {
	pool                              *pgxpool.Pool
	total, idle, acquired, maxConns   *prometheus.Desc
	acquireCount, acquireWaitDuration *prometheus.Desc
}

func newPoolCollector(p *pgxpool.Pool) *poolCollector {
	d := func(n, h string) *prometheus.Desc { return prometheus.NewDesc("qinba_db_pool_"+n, h, nil, nil) }
	return &poolCollector{pool: p,
		total: d("conns", "Connections in the pool."), idle: d("idle_conns", "Idle connections."),
		acquired: d("acquired_conns", "Connections in use."), maxConns: d("max_conns", "Maximum pool size."),
		acquireCount:        d("acquires_total", "Connections acquired."),
		acquireWaitDuration: d("acquire_wait_seconds_total", "Time spent waiting for a connection."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.idle, c.acquired, c.maxConns, c.acquireCount, c.acquireWaitDuration} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.maxConns, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquireCount, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.acquireWaitDuration, prometheus.CounterValue, s.AcquireDuration().Seconds())
}
