package consult

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Defaults of SFUConfig.
const (
	// DefaultMaxParticipants is the largest room when SFUConfig.MaxParticipants is zero.
	DefaultMaxParticipants = 6
	// DefaultReconnectGrace is how long a participant whose signalling connection
	// dropped keeps its place (and media) while it reconnects.
	DefaultReconnectGrace = 30 * time.Second
)

// LeaveReason says why a participant left a room.
type LeaveReason string

// Leave reasons passed to RoomHooks.OnLeave.
const (
	// LeaveLeft: the participant sent "leave".
	LeaveLeft LeaveReason = "left"
	// LeaveTimeout: the signalling connection dropped and was not resumed within
	// the reconnect grace.
	LeaveTimeout LeaveReason = "timeout"
	// LeaveReplaced: the same user joined again without resuming; the old session ended.
	LeaveReplaced LeaveReason = "replaced"
	// LeaveClosed: the room was closed with SFU.CloseRoom.
	LeaveClosed LeaveReason = "closed"
)

// RoomHooks lets the consult record layer follow rooms. OnJoin, OnLeave, OnEmpty
// and OnRecording run one at a time on a single goroutine, in the order the
// events happened, never under an SFU lock; a slow hook delays later hooks but
// never media. When the SFU shuts down (Close) no OnLeave or OnEmpty is called
// (a restart is not the end of a consult), but recordings are finished and
// reported with OnRecording.
type RoomHooks struct {
	// Admit, if set, is asked before a participant with a valid token is
	// connected; a non-nil error refuses the connection (an *apperr.Error keeps
	// its HTTP status). It runs on the request's goroutine.
	Admit func(ctx context.Context, consultID, userID string) error
	// OnJoin is called when a participant joins (not when it resumes).
	OnJoin func(consultID, userID string)
	// OnLeave is called when a participant leaves.
	OnLeave func(consultID, userID string, reason LeaveReason)
	// OnEmpty is called when the last participant has left and the room is gone.
	OnEmpty func(consultID string)
	// OnRecording is called once per recording when its files are complete, whether
	// it was stopped by StopRecording, CloseRoom, the room emptying or Close.
	OnRecording func(consultID string, files []RecordingFile)
}

// SFUConfig configures an SFU.
type SFUConfig struct {
	// Media is the WebRTC engine. Required.
	Media *Media
	// Tokens verifies room tokens in SignalHandler. Required.
	Tokens *RoomTokens
	// MaxParticipants per room; DefaultMaxParticipants if zero.
	MaxParticipants int
	// ReconnectGrace; DefaultReconnectGrace if zero.
	ReconnectGrace time.Duration
	// JoinTimeout is how long a new WebSocket may take to send "join" (10 s if zero).
	JoinTimeout time.Duration
	// AnswerTimeout is how long a client may take to answer an offer before its
	// WebSocket is closed (15 s if zero).
	AnswerTimeout time.Duration
	// WeakLink is the rule for pausing video on a poor downlink.
	WeakLink WeakLinkConfig
	// RecordDir is where recordings go (a directory per consult); recording is
	// off when empty.
	RecordDir string
	// OriginPatterns are the WebSocket origins accepted besides the request's own
	// host (coder/websocket patterns, e.g. "app.qinba.example").
	OriginPatterns []string
	// Hooks follow the rooms' lifecycle.
	Hooks RoomHooks
	// Logger; slog.Default if nil.
	Logger *slog.Logger
}

// ParticipantInfo describes a participant of a room; it is also the element of
// the "participants" signalling message.
type ParticipantInfo struct {
	// UserID is the participant's user id (the stream id of its tracks).
	UserID string `json:"user_id"`
	// AudioOnly is the participant's audio-only setting.
	AudioOnly bool `json:"audio_only"`
	// MaxVideoKbps is the participant's video bitrate cap (0: none).
	MaxVideoKbps int `json:"max_video_kbps,omitempty"`
	// Connected is false while the participant's signalling connection is down
	// and it may still resume.
	Connected bool `json:"connected"`
}

// errShuttingDown and errRoomFull refuse a join.
var (
	errShuttingDown = errors.New("consult: media server is shutting down")
	errRoomFull     = errors.New("consult: the consult room is full")
)

// SFU is the selective forwarding unit: it owns one room per live consult,
// receives each participant's audio and video and forwards them to the others.
type SFU struct {
	cfg   SFUConfig
	media *Media
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards rooms and closed; taken before any room.mu
	rooms  map[string]*room
	closed bool

	spawnMu     sync.Mutex // a leaf lock: guards spawnClosed and wg.Add
	spawnClosed bool
	wg          sync.WaitGroup

	hookMu    sync.Mutex
	hookQ     []func(RoomHooks)
	hookWake  chan struct{}
	hookStop  chan struct{}
	hookDone  chan struct{}
	hookClose sync.Once
}

// NewSFU validates cfg and starts an SFU. Close stops it.
func NewSFU(cfg SFUConfig) (*SFU, error) {
	if cfg.Media == nil {
		return nil, errors.New("consult: SFUConfig.Media is required")
	}
	if cfg.Tokens == nil {
		return nil, errors.New("consult: SFUConfig.Tokens is required")
	}
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = DefaultMaxParticipants
	}
	if cfg.ReconnectGrace <= 0 {
		cfg.ReconnectGrace = DefaultReconnectGrace
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 10 * time.Second
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 15 * time.Second
	}
	cfg.WeakLink = cfg.WeakLink.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &SFU{
		cfg: cfg, media: cfg.Media, log: cfg.Logger.With("component", "sfu"),
		ctx: ctx, cancel: cancel,
		rooms:    map[string]*room{},
		hookWake: make(chan struct{}, 1),
		hookStop: make(chan struct{}),
		hookDone: make(chan struct{}),
	}
	go s.runHooks()
	s.spawn(s.runBitrateCaps)
	return s, nil
}

// spawn runs fn on a goroutine that Close waits for; it refuses once Close began.
func (s *SFU) spawn(fn func()) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.spawnClosed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// hook queues fn to run on the hook goroutine.
func (s *SFU) hook(fn func(RoomHooks)) {
	s.hookMu.Lock()
	s.hookQ = append(s.hookQ, fn)
	s.hookMu.Unlock()
	select {
	case s.hookWake <- struct{}{}:
	default:
	}
}

func (s *SFU) runHooks() {
	defer close(s.hookDone)
	for {
		stopping := false
		select {
		case <-s.hookWake:
		case <-s.hookStop:
			stopping = true
		}
		for {
			s.hookMu.Lock()
			q := s.hookQ
			s.hookQ = nil
			s.hookMu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, fn := range q {
				s.runHook(fn)
			}
		}
		if stopping {
			return
		}
	}
}

func (s *SFU) runHook(fn func(RoomHooks)) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("room hook panicked", "panic", v)
		}
	}()
	fn(s.cfg.Hooks)
}

// room returns the live room of a consult, or nil.
func (s *SFU) room(consultID string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[consultID]
}

// Participants lists the participants of a consult's room (nil if none).
func (s *SFU) Participants(consultID string) []ParticipantInfo {
	r := s.room(consultID)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rosterLocked()
}

// CloseRoom disconnects everyone from a consult's room (e.g. when the consult
// ends): OnLeave with LeaveClosed for each, then OnEmpty. It returns ErrNoRoom if
// there is no room.
func (s *SFU) CloseRoom(consultID string) error {
	s.mu.Lock()
	r := s.rooms[consultID]
	if r == nil {
		s.mu.Unlock()
		return ErrNoRoom
	}
	r.mu.Lock()
	var cl cleanup
	for _, p := range r.parts {
		p.setEnd(LeaveClosed)
		cl.merge(s.removeLocked(r, p, LeaveClosed, nil))
	}
	r.mu.Unlock()
	s.mu.Unlock()
	cl.run(s)
	return nil
}

// Close stops the SFU: new joins are refused, recordings are finished, every
// participant is disconnected and every goroutine the SFU started has exited
// when it returns nil. It returns ctx.Err() if ctx ends first.
func (s *SFU) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	var recs []*roomRecording
	var ids []string
	for id, r := range s.rooms {
		r.mu.Lock()
		if rec := r.detachRecordingLocked(); rec != nil {
			recs = append(recs, rec)
			ids = append(ids, id)
		}
		r.mu.Unlock()
	}
	s.mu.Unlock()
	for i, rec := range recs {
		s.finishRecording(ids[i], rec)
	}
	s.cancel()
	s.spawnMu.Lock()
	s.spawnClosed = true
	s.spawnMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.hookClose.Do(func() { close(s.hookStop) })
		<-s.hookDone
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if already {
			return nil
		}
		return ctx.Err()
	}
}

// runBitrateCaps sends each publisher a REMB once a second carrying the lowest
// max_video_kbps among itself and the subscribers currently receiving its video,
// so the publisher's encoder adapts to the most constrained viewer. A
// subscriber whose cap is below the video floor gets no video instead.
func (s *SFU) runBitrateCaps() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.sendBitrateCaps()
	}
}

func (s *SFU) sendBitrateCaps() {
	type capped struct {
		t   *publishedTrack
		bps float64
	}
	var out []capped
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	floor := s.cfg.WeakLink.MinVideoKbps
	for _, r := range rooms {
		r.mu.Lock()
		for _, p := range r.parts {
			for _, t := range p.pubs {
				if t.kind != webrtc.RTPCodecTypeVideo {
					continue
				}
				c := int(p.maxVideoKbps.Load())
				for _, d := range t.subscribers() {
					if !d.sub.recvVideo.Load() {
						continue
					}
					if k := int(d.sub.maxVideoKbps.Load()); k >= floor && (c == 0 || k < c) {
						c = k
					}
				}
				if c > 0 {
					out = append(out, capped{t, float64(c) * 1000})
				}
			}
		}
		r.mu.Unlock()
	}
	for _, c := range out {
		_ = c.t.owner.peer.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{
			Bitrate: float32(c.bps), SSRCs: []uint32{uint32(c.t.ssrc)},
		}})
	}
}

// room is the forwarding state of one consult.
type room struct {
	id string

	mu     sync.Mutex
	parts  map[string]*participant
	rec    *roomRecording
	closed bool
}

func (r *room) rosterLocked() []ParticipantInfo {
	out := make([]ParticipantInfo, 0, len(r.parts))
	for _, p := range r.parts {
		out = append(out, p.info())
	}
	slices.SortFunc(out, func(a, b ParticipantInfo) int { return strings.Compare(a.UserID, b.UserID) })
	return out
}

// broadcastRosterLocked tells every participant who is in the room.
func (r *room) broadcastRosterLocked() {
	roster := r.rosterLocked()
	for _, p := range r.parts {
		p.mb.put(evRoster{roster})
	}
}

// cleanup is work that must happen after the locks are released.
type cleanup struct {
	recorders []*trackRecorder
	ended     []*participant
	finishRec *roomRecording
	consultID string
}

func (c *cleanup) merge(o cleanup) {
	c.recorders = append(c.recorders, o.recorders...)
	c.ended = append(c.ended, o.ended...)
	if o.finishRec != nil {
		c.finishRec, c.consultID = o.finishRec, o.consultID
	}
}

func (c *cleanup) run(s *SFU) {
	for _, tr := range c.recorders {
		tr.stop()
	}
	for _, p := range c.ended {
		p.cancel()
	}
	if c.finishRec != nil {
		s.finishRecording(c.consultID, c.finishRec)
	}
}

// join adds a participant for grant to its consult's room, or resumes the
// session of that user. The caller then feeds the participant's mailbox.
func (s *SFU) join(grant RoomGrant, j clientMessage, ws *wsConn) (*participant, error) {
	// Make the connection before taking locks: it generates a DTLS certificate.
	pr, err := s.media.newPeer(grant.Publish)
	if err != nil {
		return nil, fmt.Errorf("consult: new peer connection: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pr.close()
		return nil, errShuttingDown
	}
	r := s.rooms[grant.ConsultID]
	if r == nil {
		r = &room{id: grant.ConsultID, parts: map[string]*participant{}}
		s.rooms[grant.ConsultID] = r
	}
	r.mu.Lock()
	old := r.parts[grant.UserID]
	if old != nil && j.Resume {
		r.mu.Unlock()
		s.mu.Unlock()
		_ = pr.close()
		old.mb.put(evAttach{ws: ws, join: j, resumed: true})
		return old, nil
	}
	if old == nil && len(r.parts) >= s.cfg.MaxParticipants {
		r.mu.Unlock()
		s.mu.Unlock()
		_ = pr.close()
		return nil, errRoomFull
	}
	var cl cleanup
	p := newParticipant(s, r, grant, pr, j)
	if old != nil {
		old.setEnd(LeaveReplaced)
		cl = s.removeLocked(r, old, LeaveReplaced, p)
	} else {
		r.parts[grant.UserID] = p
	}
	if grant.Subscribe {
		for _, q := range r.parts {
			if q == p {
				continue
			}
			for _, t := range q.pubs {
				p.subscribeLocked(t)
			}
		}
	}
	s.spawn(p.run) // cannot fail: Close sets s.closed (checked above) before refusing spawns
	p.mb.put(evAttach{ws: ws, join: j})
	s.hook(func(h RoomHooks) {
		if h.OnJoin != nil {
			h.OnJoin(grant.ConsultID, grant.UserID)
		}
	})
	r.mu.Unlock()
	s.mu.Unlock()
	cl.run(s)
	return p, nil
}

// removeLocked takes p out of r: the others stop receiving its tracks and it
// stops receiving theirs. A non-nil replacement takes p's place (so the room
// does not end in between). The caller holds s.mu and r.mu and runs the
// returned cleanup after unlocking.
func (s *SFU) removeLocked(r *room, p *participant, reason LeaveReason, replacement *participant) cleanup {
	var cl cleanup
	if r.parts[p.userID] != p {
		return cl
	}
	if replacement != nil {
		r.parts[p.userID] = replacement
	} else {
		delete(r.parts, p.userID)
	}
	p.gone = true
	for _, t := range p.pubs {
		cl.recorders = append(cl.recorders, r.unpublishLocked(t)...)
	}
	p.pubs = nil
	for t, d := range p.downs {
		t.removeSub(d)
	}
	p.downs = nil
	cl.ended = append(cl.ended, p)
	s.hook(func(h RoomHooks) {
		if h.OnLeave != nil {
			h.OnLeave(r.id, p.userID, reason)
		}
	})
	if len(r.parts) == 0 {
		r.closed = true
		delete(s.rooms, r.id)
		cl.finishRec, cl.consultID = r.detachRecordingLocked(), r.id
		s.hook(func(h RoomHooks) {
			if h.OnEmpty != nil {
				h.OnEmpty(r.id)
			}
		})
	} else {
		r.broadcastRosterLocked()
	}
	return cl
}

// unpublishLocked stops forwarding t to everyone and returns its recorder to stop.
func (r *room) unpublishLocked(t *publishedTrack) []*trackRecorder {
	for _, d := range t.subscribers() {
		if d.sub.downs[t] == d {
			delete(d.sub.downs, t)
		}
		d.sub.mb.put(evRemoveDown{d})
	}
	t.subsMu.Lock()
	t.subs.Store(nil)
	t.subsMu.Unlock()
	if tr := t.rec.Swap(nil); tr != nil {
		return []*trackRecorder{tr}
	}
	return nil
}

// leave removes p from its room for reason (called from p's loop).
func (s *SFU) leave(p *participant, reason LeaveReason) {
	s.mu.Lock()
	p.room.mu.Lock()
	cl := s.removeLocked(p.room, p, reason, nil)
	p.room.mu.Unlock()
	s.mu.Unlock()
	cl.run(s)
	p.cancel()
}

// participant is one user's session in a room.
type participant struct {
	sfu    *SFU
	room   *room
	userID string
	grant  RoomGrant
	peer   *peer
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	mb     mailbox

	// Read by forwarding goroutines.
	audioOnly    atomic.Bool
	maxVideoKbps atomic.Int32
	recvVideo    atomic.Bool // video is forwarded to this participant
	sendVideo    atomic.Bool // this participant's video is forwarded
	weakPaused   atomic.Bool
	connected    atomic.Bool
	link         *linkMonitor

	// Guarded by room.mu.
	pubs  []*publishedTrack
	downs map[*publishedTrack]*downTrack
	gone  bool
	kinds map[string]int // track ids handed out, to keep them unique

	endMu     sync.Mutex
	endReason LeaveReason

	spawnMu sync.Mutex
	stopped bool
	wg      sync.WaitGroup

	// Owned by run.
	sock           *wsConn
	awaitingAnswer bool
	needOffer      bool
	needRestart    bool
	pendingCands   []webrtc.ICECandidateInit
	videoReason    string
}

func newParticipant(s *SFU, r *room, g RoomGrant, pr *peer, j clientMessage) *participant {
	ctx, cancel := context.WithCancel(s.ctx)
	p := &participant{
		sfu: s, room: r, userID: g.UserID, grant: g, peer: pr,
		log:    s.log.With("consult", g.ConsultID, "user", g.UserID),
		ctx:    ctx,
		cancel: cancel,
		mb:     newMailbox(),
		link:   newLinkMonitor(s.cfg.WeakLink),
		downs:  map[*publishedTrack]*downTrack{},
		kinds:  map[string]int{},
	}
	p.applySettings(j)
	p.sendVideo.Store(!p.audioOnly.Load())
	p.recvVideo.Store(p.wantVideo() == "")
	pr.pc.OnTrack(p.onTrack)
	pr.pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) { p.mb.put(evICE{st}) })
	return p
}

func (p *participant) info() ParticipantInfo {
	return ParticipantInfo{
		UserID: p.userID, AudioOnly: p.audioOnly.Load(),
		MaxVideoKbps: int(p.maxVideoKbps.Load()), Connected: p.connected.Load(),
	}
}

func (p *participant) setEnd(r LeaveReason) {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	if p.endReason == "" {
		p.endReason = r
	}
}

func (p *participant) end() LeaveReason {
	p.endMu.Lock()
	defer p.endMu.Unlock()
	return p.endReason
}

// spawn runs fn on a goroutine the participant's teardown waits for.
func (p *participant) spawn(fn func()) bool {
	p.spawnMu.Lock()
	defer p.spawnMu.Unlock()
	if p.stopped {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

// applySettings takes audio_only and max_video_kbps from a join or settings message.
func (p *participant) applySettings(m clientMessage) {
	if m.AudioOnly != nil {
		p.audioOnly.Store(*m.AudioOnly)
	}
	if m.MaxVideoKbps != nil {
		k := max(*m.MaxVideoKbps, 0)
		p.maxVideoKbps.Store(int32(min(k, 1<<20)))
	}
}

// wantVideo returns why video should not be forwarded to p, or "" if it should.
func (p *participant) wantVideo() string {
	switch {
	case !p.grant.Subscribe:
		return "no_subscribe_right"
	case p.audioOnly.Load():
		return "audio_only"
	case p.maxVideoKbps.Load() > 0 && int(p.maxVideoKbps.Load()) < p.sfu.cfg.WeakLink.MinVideoKbps:
		return "bitrate_cap"
	case p.weakPaused.Load():
		return "weak_link"
	}
	return ""
}

func (p *participant) observeLoss(fraction float64) {
	if paused, changed := p.link.observeLoss(time.Now(), fraction); changed {
		p.weakPaused.Store(paused)
		p.mb.put(evVideoPolicy{})
	}
}

func (p *participant) observeREMB(bps float64) {
	if paused, changed := p.link.observeREMB(time.Now(), bps); changed {
		p.weakPaused.Store(paused)
		p.mb.put(evVideoPolicy{})
	}
}

// subscribeLocked starts forwarding t to p; the caller holds the room lock.
func (p *participant) subscribeLocked(t *publishedTrack) {
	if _, ok := p.downs[t]; ok {
		return
	}
	d := &downTrack{
		id: t.id, streamID: t.owner.userID, kind: t.kind, mime: t.mime,
		src: t, sub: p,
	}
	p.downs[t] = d
	t.addSub(d)
	p.mb.put(evAddDown{d})
}

// onTrack is pion's callback for a track the participant publishes.
func (p *participant) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	if !p.grant.Publish {
		return
	}
	t := &publishedTrack{
		owner: p, kind: remote.Kind(), mime: remote.Codec().MimeType,
		ssrc: remote.SSRC(), remote: remote, receiver: receiver, delay: p.sfu.media.delay,
	}
	r := p.room
	r.mu.Lock()
	if p.gone {
		r.mu.Unlock()
		return
	}
	base := p.userID + "-" + t.kind.String()
	p.kinds[base]++
	t.id = base
	if n := p.kinds[base]; n > 1 {
		t.id = fmt.Sprintf("%s-%d", base, n)
	}
	p.pubs = append(p.pubs, t)
	for _, q := range r.parts {
		if q != p && q.grant.Subscribe {
			q.subscribeLocked(t)
		}
	}
	if r.rec != nil {
		if err := p.sfu.recordTrack(r.rec, t); err != nil {
			p.log.Error("record track", "err", err)
		}
	}
	r.mu.Unlock()
	p.log.Debug("publishing", "track", t.id, "ssrc", t.ssrc)
	p.spawn(func() {
		t.forward()
		p.unpublish(t)
	})
	p.spawn(t.drainRTCP)
	t.requestKeyframe()
}

// unpublish drops a track whose forwarding ended while p stays in the room.
func (p *participant) unpublish(t *publishedTrack) {
	r := p.room
	r.mu.Lock()
	var recs []*trackRecorder
	if i := indexOf(p.pubs, t); i >= 0 {
		p.pubs = append(p.pubs[:i:i], p.pubs[i+1:]...)
		recs = r.unpublishLocked(t)
	}
	r.mu.Unlock()
	for _, tr := range recs {
		tr.stop()
	}
}

func indexOf[T comparable](s []T, v T) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// Events of a participant's loop.
type (
	evAttach struct {
		ws      *wsConn
		join    clientMessage
		resumed bool
	}
	evMessage struct {
		ws  *wsConn
		msg clientMessage
	}
	evSockClosed  struct{ ws *wsConn }
	evAddDown     struct{ d *downTrack }
	evRemoveDown  struct{ d *downTrack }
	evRoster      struct{ roster []ParticipantInfo }
	evICE         struct{ state webrtc.ICEConnectionState }
	evVideoPolicy struct{}
)

// mailbox is an unbounded queue feeding a participant's loop: producers (media
// callbacks, other participants, the WebSocket reader) never block.
type mailbox struct {
	mu   sync.Mutex
	q    []any
	wake chan struct{}
}

func newMailbox() mailbox { return mailbox{wake: make(chan struct{}, 1)} }

func (m *mailbox) put(ev any) {
	m.mu.Lock()
	m.q = append(m.q, ev)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() []any {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.q
	m.q = nil
	return q
}

// run is the participant's loop: it alone touches the signalling state and the
// transceivers, so offers never race.
func (p *participant) run() {
	defer p.teardown()
	var grace, answer *time.Timer
	var graceC, answerC <-chan time.Time
	stop := func(t *time.Timer) {
		if t != nil {
			t.Stop()
		}
	}
	defer func() { stop(grace); stop(answer) }()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-graceC:
			graceC = nil
			for _, ev := range p.mb.take() { // a resume may be waiting
				p.handle(ev)
			}
			if p.sock == nil {
				p.setEnd(LeaveTimeout)
				p.sfu.leave(p, LeaveTimeout)
				return
			}
			p.mb.put(nil) // run the negotiation step below on the next turn
		case <-answerC:
			answerC = nil
			if p.awaitingAnswer && p.sock != nil {
				p.log.Info("no answer to offer; closing signalling connection")
				p.sock.fail("answer_timeout", "no answer to the offer in time")
			}
		case <-p.mb.wake:
			for _, ev := range p.mb.take() {
				if p.ctx.Err() != nil {
					return
				}
				p.handle(ev)
			}
			if p.ctx.Err() != nil {
				return
			}
			if p.sock == nil && graceC == nil {
				stop(grace)
				grace = time.NewTimer(p.sfu.cfg.ReconnectGrace)
				graceC = grace.C
			} else if p.sock != nil && graceC != nil {
				stop(grace)
				graceC = nil
			}
			wasAwaiting := p.awaitingAnswer
			p.negotiate()
			if p.awaitingAnswer && !wasAwaiting {
				stop(answer)
				answer = time.NewTimer(p.sfu.cfg.AnswerTimeout)
				answerC = answer.C
			} else if !p.awaitingAnswer {
				stop(answer)
				answerC = nil
			}
		}
	}
}

func (p *participant) handle(ev any) {
	switch ev := ev.(type) {
	case nil:
	case evAttach:
		if p.sock != nil && p.sock != ev.ws {
			p.sock.fail("replaced", "a newer connection took over this session")
		}
		p.sock = ev.ws
		p.connected.Store(true)
		if ev.resumed {
			p.applySettings(ev.join)
			p.updateVideoPolicy(false)
			if p.awaitingAnswer {
				if err := p.peer.rollback(); err != nil {
					p.log.Warn("rollback unanswered offer", "err", err)
				}
				p.awaitingAnswer = false
			}
			p.pendingCands = nil
			p.needRestart = true
		}
		p.needOffer = true
		p.send(welcomeMessage{
			Type: "welcome", ConsultID: p.room.id, UserID: p.userID, Resumed: ev.resumed,
			CanPublish: p.grant.Publish, CanSubscribe: p.grant.Subscribe,
		})
		p.room.mu.Lock()
		p.room.broadcastRosterLocked()
		p.room.mu.Unlock()
		p.sendVideoState(true)
	case evSockClosed:
		if ev.ws == p.sock {
			p.sock = nil
			p.connected.Store(false)
			p.room.mu.Lock()
			p.room.broadcastRosterLocked()
			p.room.mu.Unlock()
		}
	case evMessage:
		if ev.ws == p.sock {
			p.handleMessage(ev.msg)
		}
	case evAddDown:
		s, err := p.peer.addDownTrack(ev.d)
		if err != nil {
			p.log.Error("add forwarded track", "track", ev.d.id, "err", err)
			return
		}
		ev.d.sender = s
		d := ev.d
		p.spawn(func() { d.readRTCP(s) })
		p.needOffer = true
	case evRemoveDown:
		if ev.d.sender != nil {
			if err := p.peer.removeDownTrack(ev.d.sender); err != nil && p.ctx.Err() == nil {
				p.log.Debug("remove forwarded track", "track", ev.d.id, "err", err)
			}
			ev.d.sender = nil
			p.needOffer = true
		}
	case evRoster:
		p.send(participantsMessage{Type: "participants", Participants: ev.roster})
	case evICE:
		p.log.Debug("ice state", "state", ev.state.String())
		if ev.state == webrtc.ICEConnectionStateFailed && p.sock != nil {
			p.needRestart, p.needOffer = true, true
		}
	case evVideoPolicy:
		p.updateVideoPolicy(true)
	}
}

func (p *participant) handleMessage(m clientMessage) {
	switch m.Type {
	case "answer":
		if !p.awaitingAnswer {
			p.send(errorMessage{Type: "error", Code: "unexpected_answer", Message: "no offer is pending"})
			return
		}
		if err := p.peer.setAnswer(m.SDP); err != nil {
			p.log.Info("bad answer", "err", err)
			p.send(errorMessage{Type: "error", Code: "bad_answer", Message: err.Error()})
			_ = p.peer.rollback()
			p.awaitingAnswer = false
			p.needOffer = true
			return
		}
		p.awaitingAnswer = false
		for _, c := range p.pendingCands {
			_ = p.peer.addCandidate(c)
		}
		p.pendingCands = nil
	case "candidate":
		if m.Candidate == nil || m.Candidate.Candidate == "" {
			return // end of candidates
		}
		if p.awaitingAnswer || p.peer.pc.RemoteDescription() == nil {
			p.pendingCands = append(p.pendingCands, *m.Candidate)
			return
		}
		if err := p.peer.addCandidate(*m.Candidate); err != nil {
			p.log.Debug("add candidate", "err", err)
		}
	case "settings":
		p.applySettings(m)
		p.updateVideoPolicy(false)
		p.room.mu.Lock()
		p.room.broadcastRosterLocked()
		p.room.mu.Unlock()
	case "restart":
		p.needRestart, p.needOffer = true, true
	case "leave":
		p.setEnd(LeaveLeft)
		p.sfu.leave(p, LeaveLeft)
	case "join":
		p.send(errorMessage{Type: "error", Code: "bad_message", Message: "already joined"})
	default:
		p.send(errorMessage{Type: "error", Code: "bad_message", Message: fmt.Sprintf("unknown message type %q", m.Type)})
	}
}

// updateVideoPolicy recomputes whether video flows to and from p and tells p.
func (p *participant) updateVideoPolicy(fromLink bool) {
	p.sendVideo.Store(!p.audioOnly.Load())
	reason := p.wantVideo()
	p.recvVideo.Store(reason == "")
	if fromLink && reason == "" {
		p.log.Info("weak link recovered; resuming video")
	} else if fromLink && reason == "weak_link" {
		_, loss := p.link.state()
		p.log.Info("weak link; pausing video", "loss", loss)
	}
	p.sendVideoState(false)
}

// sendVideoState sends a "video" message when the forwarding decision changed
// (or always, on a fresh connection).
func (p *participant) sendVideoState(force bool) {
	reason := p.wantVideo()
	if !force && reason == p.videoReason {
		return
	}
	p.videoReason = reason
	p.send(videoMessage{Type: "video", Paused: reason != "", Reason: reason})
}

// negotiate sends an offer when the transceivers changed or ICE must restart,
// unless one is already waiting for its answer.
func (p *participant) negotiate() {
	if !p.needOffer || p.sock == nil || p.awaitingAnswer {
		return
	}
	restart := p.needRestart
	p.needOffer, p.needRestart = false, false
	sdp, err := p.peer.offer(p.ctx, restart)
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Error("create offer", "err", err)
			p.sock.fail("internal", "could not create an offer")
		}
		return
	}
	p.awaitingAnswer = true
	p.send(offerMessage{Type: "offer", SDP: sdp})
}

func (p *participant) send(v any) {
	if p.sock != nil {
		p.sock.send(v)
	}
}

// teardown closes the signalling connection and the peer connection and waits
// for the participant's goroutines.
func (p *participant) teardown() {
	p.cancel()
	if p.sock != nil {
		switch p.end() {
		case LeaveReplaced:
			p.sock.fail("replaced", "the same user joined again")
		case LeaveClosed:
			p.sock.closeWith(websocket.StatusNormalClosure, "consult closed")
		case LeaveLeft:
			p.sock.closeWith(websocket.StatusNormalClosure, "left")
		case "":
			p.sock.closeWith(websocket.StatusGoingAway, "server shutting down")
		default:
			p.sock.closeWith(websocket.StatusNormalClosure, string(p.end()))
		}
	}
	// A resume that raced with the end of the session: tell it to start afresh.
	for _, ev := range p.mb.take() {
		if a, ok := ev.(evAttach); ok && a.ws != p.sock {
			a.ws.fail("session_ended", "the session has ended; join again without resume")
		}
	}
	if err := p.peer.close(); err != nil {
		p.log.Debug("close peer connection", "err", err)
	}
	p.spawnMu.Lock()
	p.stopped = true
	p.spawnMu.Unlock()
	p.wg.Wait()
}
