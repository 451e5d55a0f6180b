package settlement

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// Handler serves the settlement routes.
type Handler struct {
	svc *Service
}

// NewHandler returns the settlement routes' handler.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// IdempotencyHeader makes settle and reverse safe to retry; it is required
// on both (428 without it).
const IdempotencyHeader = "Idempotency-Key"

// MaxImport is the largest bills CSV accepted over HTTP (the server's body
// limit may be lower); larger files go through `qinba import bills`.
const MaxImport = 64 << 20

// Routes mounts the routes on g (the authenticated /api/v1 group).
//
// Billing clerks record, import, settle and reverse the bills of their own
// facility and run its monthly clearing; admins read their region's bills,
// settlements, clearing runs and statements and run the region's clearing;
// doctors and billing clerks estimate (the admission desk). A bill of
// another facility answers 404 (a patient's bill must not leak). Every read
// and write of a bill is audited.
func (h *Handler) Routes(g *echo.Group) {
	pool, log := h.svc.pool, h.svc.log
	clerk := auth.Allow(pool, log, auth.RoleBillingClerk)
	readers := auth.Allow(pool, log, auth.RoleBillingClerk, auth.RoleAdmin)
	estimators := auth.Allow(pool, log, auth.RoleBillingClerk, auth.RoleDoctor)

	g.POST("/bills", h.createBill, clerk)
	g.GET("/bills", h.listBills, readers)
	g.POST("/bills/import", h.importBills, clerk)
	g.POST("/bills/estimate", h.estimate, estimators)
	g.GET("/bills/:id", h.getBill, readers)
	g.POST("/bills/:id/settle", h.settle, clerk)
	g.GET("/settlements/:id", h.getSettlement, readers)
	g.POST("/settlements/:id/reverse", h.reverse, clerk)
	g.POST("/clearing", h.runClearing, readers)
	g.GET("/clearing/:id", h.getClearing, readers)
	g.GET("/households/:id/statement", h.statement, readers)
}

func pathID(c echo.Context, what string) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, apperr.E(apperr.NotFound, "%s not found", what)
	}
	return id, nil
}

func (h *Handler) createBill(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	var in BillInput
	if err := httpx.BindJSON(c, &in); err != nil {
		return err
	}
	v, created, err := h.svc.CreateBill(c.Request().Context(), p, &in)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, fmt.Sprintf("/api/v1/bills/%d", v.ID))
	if !created {
		return c.JSON(http.StatusOK, v)
	}
	return c.JSON(http.StatusCreated, v)
}

func (h *Handler) listBills(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	fields := apperr.Fields{}
	for k := range c.QueryParams() {
		switch k {
		case "person", "status", "facility", "limit", "offset":
		default:
			fields.Add(k, "unknown filter")
		}
	}
	f := BillFilter{Status: c.QueryParam("status"), Facility: c.QueryParam("facility")}
	if v := c.QueryParam("person"); v != "" {
		if f.PersonID, err = strconv.ParseInt(v, 10, 64); err != nil || f.PersonID <= 0 {
			fields.Add("person", "a person id")
		}
	}
	switch f.Status {
	case "", StatusOpen, StatusSettled, StatusReversed:
	default:
		fields.Add("status", "open, settled or reversed")
	}
	if err := fields.Err(); err != nil {
		return err
	}
	if f.Limit, err = httpx.QueryInt(c, "limit", 50, 1, 500); err != nil {
		return err
	}
	if f.Offset, err = httpx.QueryInt(c, "offset", 0, 0, 1<<30); err != nil {
		return err
	}
	out, err := h.svc.ListBills(c.Request().Context(), p, f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) getBill(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bill")
	if err != nil {
		return err
	}
	v, err := h.svc.GetBill(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (h *Handler) getSettlement(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "settlement")
	if err != nil {
		return err
	}
	v, err := h.svc.GetSettlement(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// idemKey returns the request's Idempotency-Key, or a 428.
func idemKeyOf(c echo.Context) (string, error) {
	k := strings.TrimSpace(c.Request().Header.Get(IdempotencyHeader))
	if k == "" {
		return "", apperr.E(apperr.PreconditionReq, "the %s header is required: a unique value per settlement request, sent again unchanged when retrying", IdempotencyHeader)
	}
	if len(k) > 200 {
		return "", apperr.Field(IdempotencyHeader, "at most 200 characters")
	}
	return k, nil
}

// SettleRequest is the optional body of POST /bills/{id}/settle.
type SettleRequest struct {
	// Version, when given, is the bill version the clerk checked: a bill
	// corrected since is not settled (409).
	Version int `json:"version,omitempty"`
}

func (h *Handler) settle(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bill")
	if err != nil {
		return err
	}
	// Scope first: a bill of another facility is 404 whatever the request.
	if err := h.svc.checkScope(c.Request().Context(), p, "bill", id); err != nil {
		return err
	}
	key, err := idemKeyOf(c)
	if err != nil {
		return err
	}
	var req SettleRequest
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, httpx.MaxJSONBody+1))
	if err != nil {
		return apperr.Wrap(apperr.Invalid, err, "could not read request body")
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := httpx.DecodeJSON(body, &req); err != nil {
			return err
		}
	}
	out, err := h.svc.Settle(c.Request().Context(), p, id, SettleOptions{Key: key, Version: req.Version})
	if err != nil {
		return err
	}
	return sendSettled(c, out)
}

func sendSettled(c echo.Context, out *Settled) error {
	c.Response().Header().Set(echo.HeaderLocation, fmt.Sprintf("/api/v1/settlements/%d", out.Settlement.ID))
	if out.Replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return c.JSONBlob(http.StatusCreated, out.Body)
}

func (h *Handler) reverse(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "settlement")
	if err != nil {
		return err
	}
	if err := h.svc.checkScope(c.Request().Context(), p, "settlement", id); err != nil {
		return err
	}
	key, err := idemKeyOf(c)
	if err != nil {
		return err
	}
	var req ReverseRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	out, err := h.svc.Reverse(c.Request().Context(), p, id, req, key)
	if err != nil {
		return err
	}
	return sendSettled(c, out)
}

func (h *Handler) estimate(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	var billID int64
	var in *BillInput
	if v := c.QueryParam("bill_id"); v != "" {
		if billID, err = strconv.ParseInt(v, 10, 64); err != nil || billID <= 0 {
			return apperr.Field("bill_id", "a bill id")
		}
	} else {
		in = &BillInput{}
		if err := httpx.BindJSON(c, in); err != nil {
			return err
		}
	}
	out, err := h.svc.Estimate(c.Request().Context(), p, in, billID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// ImportResponse is the body of POST /bills/import.
type ImportResponse struct {
	Report *ImportReport `json:"report"`
	// RejectsCSV holds the rejected lines with their reasons (skip_invalid
	// with rejected lines only).
	RejectsCSV string `json:"rejects_csv,omitempty"`
}

func (h *Handler) importBills(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	opts := ImportOptions{Facility: p.Facility}
	switch v := c.QueryParam("skip_invalid"); v {
	case "", "0", "false":
	case "1", "true":
		opts.SkipInvalid = true
	default:
		return apperr.Field("skip_invalid", "must be 1 or 0")
	}
	body, err := httpx.CSVUpload(c, "file", "the bill file", MaxImport)
	if err != nil {
		return err
	}
	defer body.Close()
	rep, err := h.svc.ImportBills(c.Request().Context(), p, body, opts)
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			return &apperr.Error{Code: apperr.Invalid, Message: "the file has bad lines; nothing was written",
				Details: map[string]any{"rows": ie.Report.Errors, "report": ie.Report}}
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apperr.E(apperr.TooLarge, "the file is too large: import it with `qinba import bills`")
		}
		return err
	}
	out := ImportResponse{Report: rep}
	if rep.Rejected() > 0 {
		var buf bytes.Buffer
		if err := rep.WriteRejects(&buf); err != nil {
			return err
		}
		out.RejectsCSV = buf.String()
	}
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) runClearing(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	var req ClearingRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	period, err := ParsePeriod(req.Period)
	if err != nil {
		return err
	}
	run, err := h.svc.RunClearing(c.Request().Context(), p, period, strings.TrimSpace(req.Facility))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, fmt.Sprintf("/api/v1/clearing/%d", run.ID))
	return c.JSON(http.StatusCreated, run)
}

func (h *Handler) getClearing(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "clearing run")
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	if format != "" && format != "json" && format != "csv" {
		return apperr.Field("format", "json or csv")
	}
	run, err := h.svc.GetClearing(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	if format != "csv" {
		return c.JSON(http.StatusOK, run)
	}
	var buf bytes.Buffer
	if err := run.WriteCSV(&buf); err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="clearing-%s-%d.csv"`, run.Period, run.ID))
	return c.Blob(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
}

func (h *Handler) statement(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	year, err := httpx.QueryInt(c, "year", today(h.svc.now()).Year(), 2000, 2100)
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	if format != "" && format != "json" && format != "html" {
		return apperr.Field("format", "json or html")
	}
	st, err := h.svc.HouseholdStatement(c.Request().Context(), p, c.Param("id"), year)
	if err != nil {
		return err
	}
	if format != "html" {
		return c.JSON(http.StatusOK, st)
	}
	var buf bytes.Buffer
	if err := st.WriteHTML(&buf); err != nil {
		return err
	}
	c.Response().Header().Set("Content-Security-Policy", StatementCSP)
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}
