package referral

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/qinba/qinba/auth"
)

// Message is one item the hub fans out: a referral event (Type "referral",
// ID the event id) or a notification to one user (Type "notification").
// Data is the JSON sent as the SSE data line, built once for everyone.
type Message struct {
	Type string
	ID   int64
	Data []byte

	from, to, fromRegion, toRegion string
	userID                         int64
}

// Subscription receives the messages its reader may see. C is closed when
// the hub drops the subscription (it fell too far behind, or the hub
// stopped); the reader then ends its stream and the client resumes from its
// last event id.
type Subscription struct {
	C <-chan Message
	c chan Message

	vis    Visibility
	userID int64
}

func (s *Subscription) wants(m Message) bool {
	if m.userID != 0 {
		return m.userID == s.userID
	}
	v := s.vis
	return v.All || (v.Facility != "" && (m.from == v.Facility || m.to == v.Facility)) ||
		(v.Region != "" && (m.fromRegion == v.Region || m.toRegion == v.Region))
}

// subscriberBuffer is how many messages a subscriber may lag behind before
// it is dropped.
const subscriberBuffer = 512

// Hub is one server instance's fan-out: a single LISTEN connection feeds
// every stream subscriber in memory; no subscriber holds a database
// connection.
type Hub struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	closed  bool
	last    int64 // the last event id dispatched; -1 before the first LISTEN
	ready   chan struct{}
	onReady sync.Once
}

func newHub(pool *pgxpool.Pool, log *slog.Logger) *Hub {
	return &Hub{pool: pool, log: log, subs: map[*Subscription]struct{}{}, last: -1, ready: make(chan struct{})}
}

// Ready is closed once the hub listens (tests wait for it before changing
// anything they expect to see live).
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Subscribe registers a subscriber for what p may see. It returns nil when
// the hub has stopped.
func (h *Hub) Subscribe(p *auth.Principal) *Subscription {
	c := make(chan Message, subscriberBuffer)
	s := &Subscription{C: c, c: c, vis: VisibilityOf(p), userID: p.UserID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.subs[s] = struct{}{}
	return s
}

// Unsubscribe removes s; it is safe to call more than once.
func (h *Hub) Unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
	}
}

// Subscribers is the number of connected subscribers.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *Hub) dispatch(m Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.wants(m) {
			continue
		}
		select {
		case s.c <- m:
		default:
			// Too slow: drop it; the client resumes from its last id.
			delete(h.subs, s)
			close(s.c)
			h.log.Warn("referral stream subscriber dropped: too far behind")
		}
	}
}

func (h *Hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.c)
	}
}

// Run listens until ctx is cancelled, reconnecting with backoff when the
// connection breaks; after each (re)connect it dispatches every event it
// has not dispatched yet, so a broken connection loses nothing. When it
// returns, every subscription is closed.
func (h *Hub) Run(ctx context.Context) error {
	defer h.closeAll()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		h.log.Warn("referral listener disconnected", "err", err)
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (h *Hub) listen(ctx context.Context) error {
	cfg := h.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = ListenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+ChannelEvent+`; LISTEN `+ChannelNotification); err != nil {
		return err
	}
	if h.last < 0 {
		// First start: live from here on (clients replay the past
		// themselves with Last-Event-ID).
		if h.last, err = (Store{}).LastEventID(ctx, conn); err != nil {
			return err
		}
	}
	if err := h.catchUp(ctx, conn); err != nil {
		return err
	}
	h.onReady.Do(func() { close(h.ready) })
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case ChannelEvent:
			var p struct {
				ID int64 `json:"id"`
			}
			if json.Unmarshal([]byte(n.Payload), &p) == nil && p.ID <= h.last {
				continue // already dispatched by an earlier catch-up
			}
			if err := h.catchUp(ctx, conn); err != nil {
				return err
			}
		case ChannelNotification:
			var p struct {
				ID int64 `json:"id"`
			}
			if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
				continue
			}
			if err := h.deliverNotification(ctx, conn, p.ID); err != nil {
				return err
			}
		}
	}
}

// ListenerName is the application_name of the hub's LISTEN connection (as
// pg_stat_activity shows it).
const ListenerName = "qinba-referral-listener"

// catchUpBatch is how many events one catch-up query loads.
const catchUpBatch = 500

// catchUp dispatches every event after h.last, in id (= commit) order.
func (h *Hub) catchUp(ctx context.Context, conn *pgx.Conn) error {
	for {
		items, err := (Store{}).EventsAfter(ctx, conn, h.last, Visibility{All: true}, catchUpBatch)
		if err != nil {
			return err
		}
		for _, it := range items {
			h.dispatch(itemMessage(it))
			h.last = it.Event.ID
		}
		if len(items) < catchUpBatch {
			return nil
		}
	}
}

func itemMessage(it StreamItem) Message {
	data, _ := json.Marshal(it)
	return Message{Type: "referral", ID: it.Event.ID, Data: data,
		from: it.Referral.From.Code, to: it.Referral.To.Code, fromRegion: it.Referral.From.Region, toRegion: it.Referral.To.Region}
}

func (h *Hub) deliverNotification(ctx context.Context, conn *pgx.Conn, id int64) error {
	n, err := (Store{}).notification(ctx, conn, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	data, _ := json.Marshal(n)
	h.dispatch(Message{Type: "notification", Data: data, userID: n.UserID})
	return nil
}
