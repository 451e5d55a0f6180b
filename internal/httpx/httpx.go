// Package httpx is the HTTP plumbing shared by every capability: the echo
// instance with its middleware, the one JSON error shape, strict JSON
// binding with field-level errors, request ids, structured logs and
// Prometheus metrics.
package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qinba/qinba/internal/apperr"
)

// ErrorBody is the one JSON error shape of the API:
// {"error": {"code": "...", "message": "...", "fields": {...}}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	Fields    map[string]string `json:"fields,omitempty"`
	Details   map[string]any    `json:"details,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
}

// Status maps an error code to its HTTP status. It is the only such mapping.
func Status(code apperr.Code) int {
	switch code {
	case apperr.Invalid:
		return http.StatusBadRequest
	case apperr.Unauthenticated:
		return http.StatusUnauthorized
	case apperr.Forbidden:
		return http.StatusForbidden
	case apperr.NotFound:
		return http.StatusNotFound
	case apperr.Conflict:
		return http.StatusConflict
	case apperr.TooLarge:
		return http.StatusRequestEntityTooLarge
	case apperr.Unsupported:
		return http.StatusUnsupportedMediaType
	case apperr.RateLimited:
		return http.StatusTooManyRequests
	case apperr.Unavailable:
		return http.StatusServiceUnavailable
	case apperr.PreconditionReq:
		return http.StatusPreconditionRequired
	}
	return http.StatusInternalServerError
}

// fromEcho turns echo's own errors (404 route, 405, 413 body limit, ...)
// into application errors.
func fromEcho(he *echo.HTTPError) *apperr.Error {
	msg := http.StatusText(he.Code)
	if m, ok := he.Message.(string); ok && m != "" {
		msg = m
	}
	switch he.Code {
	case http.StatusNotFound:
		return apperr.E(apperr.NotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return &apperr.Error{Code: apperr.Invalid, Message: "method not allowed"}
	case http.StatusRequestEntityTooLarge:
		return apperr.E(apperr.TooLarge, "request body too large")
	case http.StatusUnauthorized:
		return apperr.E(apperr.Unauthenticated, "%s", msg)
	case http.StatusForbidden:
		return apperr.E(apperr.Forbidden, "%s", msg)
	case http.StatusTooManyRequests:
		return apperr.E(apperr.RateLimited, "too many requests")
	case http.StatusUnsupportedMediaType:
		return apperr.E(apperr.Unsupported, "unsupported media type")
	case http.StatusServiceUnavailable:
		return apperr.E(apperr.Unavailable, "service unavailable")
	}
	if he.Code >= 400 && he.Code < 500 {
		return apperr.E(apperr.Invalid, "%s", msg)
	}
	return &apperr.Error{Code: apperr.Internal, Message: "internal error", Err: he}
}

// ErrorHandler renders every error as the JSON error shape. Internal errors
// are logged with the request's fields and shown only as "internal error".
func ErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var ae *apperr.Error
		var he *echo.HTTPError
		switch {
		case errors.As(err, &ae):
		case errors.As(err, &he):
			ae = fromEcho(he)
		case errors.Is(err, context.Canceled):
			ae = apperr.Wrap(apperr.Unavailable, err, "request cancelled")
		case IsUnavailable(err):
			ae = apperr.Wrap(apperr.Unavailable, err, "database unavailable, try again")
		default:
			ae = &apperr.Error{Code: apperr.Internal, Message: "internal error", Err: err}
		}
		status := Status(ae.Code)
		rid := c.Response().Header().Get(echo.HeaderXRequestID)
		if status >= 500 {
			log.ErrorContext(c.Request().Context(), "request failed",
				"request_id", rid, "method", c.Request().Method, "route", c.Path(), "status", status, "err", err.Error())
		}
		msg := ae.Message
		if ae.Code == apperr.Internal {
			msg = "internal error"
		}
		body := ErrorBody{Error: ErrorDetail{Code: string(ae.Code), Message: msg, Fields: ae.Fields, Details: ae.Details, RequestID: rid}}
		if (ae.Code == apperr.RateLimited || ae.Code == apperr.Unavailable) && c.Response().Header().Get("Retry-After") == "" {
			wait := "1"
			if n, ok := ae.Details["retry_after_seconds"].(int); ok && n > 0 {
				wait = strconv.Itoa(n)
			}
			c.Response().Header().Set("Retry-After", wait)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, body)
	}
}

// IsUnavailable reports whether err means the database cannot be reached
// (connection refused, shut down, pool closed): the client should retry.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	for _, frag := range []string{"connection refused", "failed to connect", "closed pool", "the database system is shutting down",
		"the database system is starting up", "terminating connection", "conn closed", "unexpected EOF", "broken pipe", "connection reset"} {
		if strings.Contains(s, frag) {
			return true
		}
	}
	return false
}

// MaxJSONBody is the default limit for JSON request bodies.
const MaxJSONBody = 1 << 20

// BindJSON decodes the request body into v strictly: the content type must
// be JSON, the body valid UTF-8 and at most MaxJSONBody bytes, unknown fields
// and trailing data are rejected, and a type error names the field.
func BindJSON(c echo.Context, v any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct != "" && !strings.HasPrefix(strings.ToLower(ct), echo.MIMEApplicationJSON) {
		return apperr.E(apperr.Unsupported, "content type must be application/json")
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, MaxJSONBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apperr.E(apperr.TooLarge, "request body too large")
		}
		return apperr.Wrap(apperr.Invalid, err, "could not read request body")
	}
	if len(body) > MaxJSONBody {
		return apperr.E(apperr.TooLarge, "request body too large")
	}
	return DecodeJSON(body, v)
}

// DecodeJSON is BindJSON's decoder, usable on bytes (and fuzzable).
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return apperr.E(apperr.Invalid, "request body is empty")
	}
	if !utf8.Valid(body) {
		return apperr.E(apperr.Invalid, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return apperr.E(apperr.Invalid, "unexpected data after the JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return apperr.Field(field, "must be %s", kindName(te.Type))
	case errors.As(err, &se):
		return apperr.E(apperr.Invalid, "malformed JSON at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apperr.Field(name, "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return apperr.E(apperr.Invalid, "malformed JSON: unexpected end of input")
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return ae
	}
	return apperr.Wrap(apperr.Invalid, err, "malformed JSON: "+err.Error())
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "a valid value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a valid " + t.String()
}

// QueryInt parses an optional integer query parameter within [min, max].
func QueryInt(c echo.Context, name string, def, min, max int) (int, error) {
	s := c.QueryParam(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, apperr.Field(name, "must be an integer from %d to %d", min, max)
	}
	return n, nil
}

// Metrics are the HTTP metrics registered on a Prometheus registry.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the HTTP metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qinba_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "qinba_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// Middleware logs each request with slog and records its metrics.
func Middleware(log *slog.Logger, m *Metrics) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			d := time.Since(start)
			if m != nil {
				m.requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Inc()
				m.latency.WithLabelValues(route, c.Request().Method).Observe(d.Seconds())
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			// The path is logged as the route pattern, never the raw URL:
			// raw URLs and query strings may carry identity numbers.
			log.LogAttrs(c.Request().Context(), level, "http",
				slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
				slog.String("method", c.Request().Method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Int64("bytes", c.Response().Size),
				slog.Duration("duration", d),
				slog.String("ip", c.RealIP()))
			return nil
		}
	}
}

// NewEcho builds the echo instance with the shared middleware: request ids,
// panic recovery (no stack to the client), logging and metrics, a global
// body limit and the JSON error handler.
func NewEcho(log *slog.Logger, m *Metrics, bodyLimit string) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = ErrorHandler(log)
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(middleware.RequestID())
	e.Use(Middleware(log, m))
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll:   true,
		DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			log.Error("panic", "route", c.Path(), "err", err.Error(), "stack", string(stack))
			return fmt.Errorf("panic: %w", err)
		},
	}))
	e.Use(middleware.BodyLimit(bodyLimit))
	return e
}
