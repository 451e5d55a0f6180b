package referral

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
	"github.com/qinba/qinba/internal/httpx"
)

// Handler serves the /api/v1/referrals and /api/v1/notifications routes.
type Handler struct {
	svc *Service
}

// NewHandler returns the referral routes' handler.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// Routes mounts the referral routes on g (an authenticated /api/v1 group).
// Creating is for doctors and village doctors (from their own facility);
// acting on an incoming referral for doctors of the receiving facility;
// cancelling for the sending facility; reading for both ends and the
// region's admins. Record-level checks live in the Service.
func (h *Handler) Routes(g *echo.Group) {
	pool, log := h.svc.pool, h.svc.log
	senders := auth.Allow(pool, log, createRoles...)
	doctors := auth.Allow(pool, log, auth.RoleDoctor)
	readers := auth.Allow(pool, log, viewRoles...)

	g.POST("/referrals", h.create, senders)
	g.GET("/referrals", h.list, readers)
	g.GET("/referrals/stream", h.stream, readers)
	g.GET("/referrals/stats", h.stats, readers)
	g.GET("/referrals/:id", h.get, readers)
	g.POST("/referrals/:id/accept", h.act(Accept), doctors)
	g.POST("/referrals/:id/decline", h.act(Decline), doctors)
	g.POST("/referrals/:id/schedule", h.act(Schedule), doctors)
	g.POST("/referrals/:id/arrive", h.act(Arrive), doctors)
	g.POST("/referrals/:id/complete", h.act(Complete), doctors)
	g.POST("/referrals/:id/cancel", h.act(Cancel), senders)
	g.POST("/referrals/:id/attachments", h.upload, senders)
	g.GET("/referrals/:id/attachments/:aid", h.download, readers)
	g.GET("/notifications", h.notifications)
}

func pathID(c echo.Context, name string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, apperr.E(apperr.NotFound, "referral not found")
	}
	return id, nil
}

// IdempotencyHeader is the header that makes POST /referrals safe to retry.
const IdempotencyHeader = "Idempotency-Key"

func (h *Handler) create(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	var req CreateRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	key := strings.TrimSpace(c.Request().Header.Get(IdempotencyHeader))
	r, created, err := h.svc.Create(c.Request().Context(), p, req, key)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, fmt.Sprintf("%s/%d", strings.TrimSuffix(c.Request().URL.Path, "/"), r.ID))
	if !created {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return c.JSON(http.StatusCreated, r)
}

// ListResponse is the body of GET /referrals. StreamCursor is the last
// event id at the time of the list: open the stream with it as
// last_event_id to get every change since.
type ListResponse struct {
	Referrals    []Summary `json:"referrals"`
	StreamCursor int64     `json:"stream_cursor"`
}

func (h *Handler) list(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	f := apperr.Fields{}
	lf := ListFilter{Box: c.QueryParam("box"), State: State(c.QueryParam("state"))}
	for k := range c.QueryParams() {
		switch k {
		case "box", "state", "limit":
		default:
			f.Add(k, "unknown filter")
		}
	}
	switch lf.Box {
	case "", "inbox", "outbox":
	default:
		f.Add("box", "must be inbox or outbox")
	}
	if lf.State != "" && !lf.State.Valid() {
		f.Add("state", "unknown state")
	}
	if lf.Limit, err = httpx.QueryInt(c, "limit", 50, 1, 200); err != nil {
		return err
	}
	if err := f.Err(); err != nil {
		return err
	}
	out, cursor, err := h.svc.List(c.Request().Context(), p, lf)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ListResponse{Referrals: out, StreamCursor: cursor})
}

func (h *Handler) get(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	d, err := h.svc.Get(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (h *Handler) act(a Action) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := auth.Current(c)
		if err != nil {
			return err
		}
		id, err := pathID(c, "id")
		if err != nil {
			return err
		}
		var req ActionRequest
		if err := httpx.BindJSON(c, &req); err != nil {
			return err
		}
		r, err := h.svc.Act(c.Request().Context(), p, id, a, req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, r)
	}
}

func (h *Handler) upload(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEMultipartForm) {
		return apperr.E(apperr.Unsupported, "send the file as multipart/form-data (field \"file\")")
	}
	mr, err := c.Request().MultipartReader()
	if err != nil {
		return apperr.Wrap(apperr.Invalid, err, "malformed multipart body")
	}
	// Stream the parts instead of parsing the whole form into memory or
	// temporary files; stop reading at the size limit.
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return apperr.Field("file", "a file is required")
		}
		if err != nil {
			return bodyError(err)
		}
		if part.FormName() != "file" {
			_ = part.Close()
			continue
		}
		limit := h.svc.policy.MaxAttachment
		data, err := io.ReadAll(io.LimitReader(part, int64(limit)+1))
		_ = part.Close()
		if err != nil {
			return bodyError(err)
		}
		if len(data) > limit {
			return apperr.E(apperr.TooLarge, "an attachment may have at most %d bytes", limit)
		}
		a, err := h.svc.AddAttachment(c.Request().Context(), p, id, part.FileName(), data)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, a)
	}
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apperr.E(apperr.TooLarge, "request body too large")
	}
	return apperr.Wrap(apperr.Invalid, err, "malformed multipart body")
}

func (h *Handler) download(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	aid, err := pathID(c, "aid")
	if err != nil {
		return err
	}
	a, data, err := h.svc.Attachment(c.Request().Context(), p, id, aid)
	if err != nil {
		return err
	}
	hd := c.Response().Header()
	hd.Set(echo.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "private, no-store")
	hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	hd.Set(echo.HeaderContentLength, strconv.Itoa(len(data)))
	return c.Blob(http.StatusOK, a.ContentType, data)
}

func (h *Handler) stats(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	month := h.svc.clock.Now()
	if m := c.QueryParam("month"); m != "" {
		if month, err = ParseMonth(m); err != nil {
			return err
		}
	}
	st, err := h.svc.Stats(c.Request().Context(), p, month)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// NotificationsResponse is the body of GET /notifications.
type NotificationsResponse struct {
	Notifications []Notification `json:"notifications"`
}

func (h *Handler) notifications(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	limit, err := httpx.QueryInt(c, "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	ns, err := h.svc.Notifications(c.Request().Context(), p, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NotificationsResponse{Notifications: ns})
}

// lastEventID reads the resume point: the Last-Event-ID header (sent by
// EventSource on reconnect) or ?last_event_id=; -1 when neither is given.
func lastEventID(c echo.Context) (int64, error) {
	s := c.Request().Header.Get("Last-Event-ID")
	if s == "" {
		s = c.QueryParam("last_event_id")
	}
	if s == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, apperr.Field("last_event_id", "must be a non-negative event id")
	}
	return n, nil
}

// Stream timing: how long a new subscriber waits for the hub to start
// listening, and how long one write to a client may take.
const (
	readyWait = 5 * time.Second
	writeWait = 30 * time.Second
)

// replayBatch is how many past events one replay query loads.
const replayBatch = 500

// stream is GET /referrals/stream: Server-Sent Events of every change to
// the referrals the user may see ("event: referral", id = event id), and of
// the user's notifications ("event: notification", no id). With a last
// event id it first replays what the user missed, from the table, then goes
// live without a gap or a duplicate. A comment line every Heartbeat keeps
// proxies from closing the connection.
func (h *Handler) stream(c echo.Context) error {
	p, err := auth.Current(c)
	if err != nil {
		return err
	}
	last, err := lastEventID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	hub := h.svc.hub
	// Subscribe only once the hub listens (it starts with the server), so
	// that it has dispatched nothing this subscriber's replay could miss.
	select {
	case <-hub.Ready():
	case <-ctx.Done():
		return nil
	case <-time.After(readyWait):
		return apperr.E(apperr.Unavailable, "the live stream is starting, try again")
	}
	// Subscribe before replaying: whatever commits after the replay's
	// snapshot arrives live; what both deliver is skipped by id.
	sub := hub.Subscribe(p)
	if sub == nil {
		return apperr.E(apperr.Unavailable, "the server is shutting down")
	}
	defer hub.Unsubscribe(sub)
	if err := auth.Audit(ctx, h.svc.pool, auth.Entry{Action: "read", RecordType: "referral", RecordID: "stream", Facility: p.Facility,
		Detail: map[string]any{"last_event_id": last}}); err != nil {
		return err
	}

	res := c.Response()
	// Each flush gets a write deadline, so a dead client cannot block
	// this handler forever. (The server's ReadTimeout does not end the
	// stream: net/http lifts the read deadline once the request is read.)
	rc := http.NewResponseController(res.Writer)
	hd := res.Header()
	hd.Set(echo.HeaderContentType, "text/event-stream; charset=utf-8")
	hd.Set("Cache-Control", "no-cache, no-store")
	hd.Set("X-Accel-Buffering", "no")
	hd.Set("X-Content-Type-Options", "nosniff")
	res.WriteHeader(http.StatusOK)
	w := bufio.NewWriterSize(res, 8<<10)
	flush := func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if err := w.Flush(); err != nil {
			return err
		}
		res.Flush()
		return nil
	}
	fmt.Fprint(w, "retry: 3000\n: connected\n\n")
	if err := flush(); err != nil {
		return nil
	}

	sent := last
	if last >= 0 {
		vis := VisibilityOf(p)
		for {
			items, err := h.svc.store.EventsAfter(ctx, h.svc.pool, sent, vis, replayBatch)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				h.svc.log.WarnContext(ctx, "referral stream replay failed", "err", err)
				return nil // the client reconnects and resumes
			}
			for _, it := range items {
				writeMessage(w, itemMessage(it))
				sent = it.Event.ID
			}
			if err := flush(); err != nil {
				return nil
			}
			if len(items) < replayBatch {
				break
			}
		}
	}

	beat := time.NewTicker(h.svc.policy.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-sub.C:
			if !ok {
				return nil
			}
			if m.Type == "referral" {
				if m.ID <= sent {
					continue
				}
				sent = m.ID
			}
			writeMessage(w, m)
			// Write whatever else is already queued before flushing once.
			for more := true; more; {
				select {
				case m, ok := <-sub.C:
					if !ok {
						_ = flush()
						return nil
					}
					if m.Type == "referral" {
						if m.ID <= sent {
							continue
						}
						sent = m.ID
					}
					writeMessage(w, m)
				default:
					more = false
				}
			}
			if err := flush(); err != nil {
				return nil
			}
		case <-beat.C:
			fmt.Fprint(w, ": heartbeat\n\n")
			if err := flush(); err != nil {
				return nil
			}
		}
	}
}

func writeMessage(w io.Writer, m Message) {
	if m.ID > 0 {
		fmt.Fprintf(w, "id: %d\n", m.ID)
	}
	// Data is compact JSON: no newlines, so one data line.
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.Type, m.Data)
}
