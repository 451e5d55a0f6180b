package consult

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/qinba/qinba/internal/httpx"
)

// waitTimeout bounds every wait in these tests: generous, since a noisy two-core
// machine under -race can be slow, and only reached when something is broken.
const waitTimeout = 20 * time.Second

// memKeys is an in-memory KeySource.
type memKeys struct {
	kid  string
	priv ed25519.PrivateKey
	pubs map[string]ed25519.PublicKey
}

func newMemKeys(t testing.TB, kid string) *memKeys {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &memKeys{kid: kid, priv: priv, pubs: map[string]ed25519.PublicKey{kid: pub}}
}

func (k *memKeys) SigningKey() (string, ed25519.PrivateKey) { return k.kid, k.priv }

func (k *memKeys) PublicKey(kid string) (ed25519.PublicKey, bool) {
	p, ok := k.pubs[kid]
	return p, ok
}

// hookLog records RoomHooks calls.
type hookLog struct {
	mu     sync.Mutex
	events []string
	recs   [][]RecordingFile
	change chan struct{}
}

func newHookLog() *hookLog { return &hookLog{change: make(chan struct{})} }

func (h *hookLog) add(ev string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
	close(h.change)
	h.change = make(chan struct{})
}

func (h *hookLog) hooks() RoomHooks {
	return RoomHooks{
		OnJoin:  func(c, u string) { h.add("join " + c + " " + u) },
		OnLeave: func(c, u string, r LeaveReason) { h.add("leave " + c + " " + u + " " + string(r)) },
		OnEmpty: func(c string) { h.add("empty " + c) },
		OnRecording: func(c string, files []RecordingFile) {
			h.mu.Lock()
			h.recs = append(h.recs, files)
			h.mu.Unlock()
			h.add(fmt.Sprintf("recording %s %d", c, len(files)))
		},
	}
}

func (h *hookLog) has(ev string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e == ev {
			return true
		}
	}
	return false
}

func (h *hookLog) snapshot() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// waitEvent waits until ev has been recorded.
func (h *hookLog) waitEvent(t testing.TB, ev string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		ch := h.change
		h.mu.Unlock()
		if h.has(ev) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("hook event %q did not happen; got %q", ev, h.snapshot())
		}
	}
}

// testBundle is a running SFU behind an HTTP server.
type testBundle struct {
	media  *Media
	tokens *RoomTokens
	keys   *memKeys
	sfu    *SFU
	hooks  *hookLog
	srv    *httptest.Server
	wsBase string
}

type setupOpts struct {
	sfu   func(*SFUConfig)
	media func(*MediaConfig)
}

func setup(t testing.TB, opts setupOpts) *testBundle {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		tw := &testWriter{t: t}
		t.Cleanup(tw.stop) // registered first, so it runs after the SFU is closed
		log = slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	mc := MediaConfig{LoopbackOnly: true, Logger: log}
	if opts.media != nil {
		opts.media(&mc)
	}
	media, err := NewMedia(mc)
	if err != nil {
		t.Fatal(err)
	}
	keys := newMemKeys(t, "k1")
	tokens, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: "qinba-test"})
	if err != nil {
		t.Fatal(err)
	}
	hooks := newHookLog()
	cfg := SFUConfig{Media: media, Tokens: tokens, Hooks: hooks.hooks(), Logger: log}
	if opts.sfu != nil {
		opts.sfu(&cfg)
	}
	s, err := NewSFU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HideBanner = true
	e.HTTPErrorHandler = httpx.ErrorHandler(log)
	e.GET("/api/v1/consults/:id/signal", s.SignalHandler())
	srv := httptest.NewServer(e)
	b := &testBundle{
		media: media, tokens: tokens, keys: keys, sfu: s, hooks: hooks, srv: srv,
		wsBase: "ws" + strings.TrimPrefix(srv.URL, "http"),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("sfu close: %v", err)
		}
		srv.Close()
	})
	return b
}

// testWriter sends slog output to t.Log until the test ends (pion may log from
// goroutines that finish just after Close).
type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

func (b *testBundle) token(t testing.TB, consultID, userID string) string {
	t.Helper()
	tok, _, err := b.tokens.Issue(RoomGrant{ConsultID: consultID, UserID: userID, Publish: true, Subscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (b *testBundle) signalURL(consultID, token string) string {
	u := b.wsBase + "/api/v1/consults/" + url.PathEscape(consultID) + "/signal"
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	return u
}

// Synthetic media. Every packet ends with a 16-byte trailer: the send time in
// unix nanoseconds and the publisher's packet index, both big-endian.
const trailerLen = 16

type serverMsg struct {
	Type         string            `json:"type"`
	SDP          string            `json:"sdp"`
	Code         string            `json:"code"`
	Message      string            `json:"message"`
	Reason       string            `json:"reason"`
	Paused       bool              `json:"paused"`
	Resumed      bool              `json:"resumed"`
	Participants []ParticipantInfo `json:"participants"`
}

// recvStats is what a client received from one publisher's track.
type recvStats struct {
	packets       int
	keyframes     int
	firstKeyframe bool // the first packet was the start of a keyframe
	ended         bool
	ssrc          uint32
	lastIndex     uint64
	firstSeq      uint16
	firstKeySeq   int // -1 until a keyframe arrived
	firstIndex    uint64
}

type clientOpts struct {
	audioOnly   bool
	maxKbps     int
	resume      bool
	noReports   bool // build the client without RTCP report interceptors
	iceServers  []ICEServer
	relayOnly   bool
	frameBytes  int  // video frame size; 1000 if zero
	noPublish   bool // do not start sending media
	subprotocol bool // pass the token as a subprotocol instead of ?token=
	onPacket    func(from, kind string, sendNs int64, now time.Time)
	onSend      func(kind string, sendNs int64)
	api         *webrtc.API // the client's engine; newClientAPI(noReports) if nil
	twcc        bool        // record arrivals for TWCC feedback (benchmark clients)
	tap         *benchTap   // takes the media of each track once it started (benchmark clients)
}

// testClient is a pion participant speaking the signalling protocol.
type testClient struct {
	t      testing.TB
	user   string
	pc     *webrtc.PeerConnection
	ws     *websocket.Conn
	opts   clientOpts
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // media goroutines: end when pc closes
	sigWG  sync.WaitGroup // signalling readers: end before pc closes

	audio, video             *webrtc.TrackLocalStaticRTP
	audioSender, videoSender *webrtc.RTPSender
	keyframeWanted           atomic.Bool
	twcc                     *twccArrivals // nil unless opts.twcc
	stopMedia                chan struct{}
	mediaOnce                sync.Once
	index                    atomic.Uint64

	mu       sync.Mutex
	change   chan struct{}
	recv     map[string]*recvStats // "<user>/<kind>"
	msgs     []serverMsg
	offers   []string
	remb     []float32
	pliCount int
	twccAcks int // packets the server's TWCC feedback reported as received
	closed   bool
	dropped  map[*websocket.Conn]bool // sockets closed on purpose
	sigErr   error                    // why the last signalling read ended
}

func newClientAPI(t testing.TB, noReports bool) *webrtc.API {
	t.Helper()
	if !noReports {
		m, err := NewMedia(MediaConfig{LoopbackOnly: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return m.api
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{slog.New(slog.NewTextHandler(io.Discard, nil))}}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

// connect dials the signalling endpoint and joins; it does not wait for media.
func (b *testBundle) connect(t testing.TB, consultID, user string, opts clientOpts) *testClient {
	t.Helper()
	return b.connectWithToken(t, consultID, user, b.token(t, consultID, user), opts)
}

func (b *testBundle) connectWithToken(t testing.TB, consultID, user, token string, opts clientOpts) *testClient {
	t.Helper()
	api := opts.api
	if api == nil {
		api = newClientAPI(t, opts.noReports)
	}
	conf := webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}
	for _, s := range opts.iceServers {
		conf.ICEServers = append(conf.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	if opts.relayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, user, pc, opts)
	c.dial(b, consultID, token)
	return c
}

func newTestClient(t testing.TB, user string, pc *webrtc.PeerConnection, opts clientOpts) *testClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &testClient{
		t: t, user: user, pc: pc, opts: opts, ctx: ctx, cancel: cancel,
		change: make(chan struct{}), recv: map[string]*recvStats{}, stopMedia: make(chan struct{}),
	}
	if opts.twcc {
		c.twcc = newTWCCArrivals()
	}
	var err error
	c.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", user)
	if err != nil {
		t.Fatal(err)
	}
	c.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", user)
	if err != nil {
		t.Fatal(err)
	}
	if c.audioSender, err = pc.AddTrack(c.audio); err != nil {
		t.Fatal(err)
	}
	if c.videoSender, err = pc.AddTrack(c.video); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*webrtc.RTPSender{c.audioSender, c.videoSender} {
		s := s
		c.go_(func() { c.readSenderRTCP(s) })
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
		c.go_(func() { c.readTrack(tr, rcv) })
	})
	t.Cleanup(c.close)
	return c
}

func (c *testClient) go_(fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

func (c *testClient) dial(b *testBundle, consultID, token string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, waitTimeout)
	defer cancel()
	u := b.signalURL(consultID, token)
	var dopts websocket.DialOptions
	if c.opts.subprotocol {
		u = b.signalURL(consultID, "")
		dopts.Subprotocols = []string{SignalSubprotocol, token}
	}
	ws, _, err := websocket.Dial(ctx, u, &dopts)
	if err != nil {
		c.t.Fatalf("%s: dial: %v", c.user, err)
	}
	ws.SetReadLimit(signalReadLimit)
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	join := map[string]any{"type": "join", "resume": c.opts.resume, "audio_only": c.opts.audioOnly}
	if c.opts.maxKbps > 0 {
		join["max_video_kbps"] = c.opts.maxKbps
	}
	c.send(join)
	c.sigWG.Add(1)
	go func() {
		defer c.sigWG.Done()
		c.readSignal(ws)
	}()
	if !c.opts.noPublish {
		c.mediaOnce.Do(func() { c.go_(c.sendMedia) })
	}
}

func (c *testClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, waitTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil && c.ctx.Err() == nil {
		c.t.Logf("%s: send: %v", c.user, err)
	}
}

// readSignal handles server messages: it answers offers (non-trickle).
func (c *testClient) readSignal(ws *websocket.Conn) {
	for {
		_, b, err := ws.Read(c.ctx)
		if err != nil {
			c.update(func() { c.sigErr = err })
			return
		}
		var m serverMsg
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Errorf("%s: bad server message %s", c.user, b)
			return
		}
		if m.Type == "offer" {
			if err := c.answer(ws, m.SDP); err != nil {
				c.mu.Lock()
				dropped := c.dropped[ws]
				c.mu.Unlock()
				if c.ctx.Err() == nil && !dropped {
					c.t.Errorf("%s: answer: %v", c.user, err)
				}
				return
			}
		}
		c.update(func() {
			c.msgs = append(c.msgs, m)
			if m.Type == "offer" {
				c.offers = append(c.offers, m.SDP)
			}
		})
	}
}

func (c *testClient) answer(ws *websocket.Conn, sdp string) error {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	a, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(a); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	b, _ := json.Marshal(map[string]string{"type": "answer", "sdp": c.pc.LocalDescription().SDP})
	ctx, cancel := context.WithTimeout(c.ctx, waitTimeout)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, b)
}

func (c *testClient) update(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn()
	close(c.change)
	c.change = make(chan struct{})
}

// waitFor waits until cond (called with c.mu held) is true.
func (c *testClient) waitFor(desc string, cond func() bool) {
	c.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		c.mu.Lock()
		ok, ch := cond(), c.change
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			c.t.Fatalf("%s: timed out waiting for %s; received %s", c.user, desc, c.describeLocked())
		}
	}
}

func (c *testClient) describeLocked() string {
	var parts []string
	for k, s := range c.recv {
		parts = append(parts, fmt.Sprintf("%s=%d(key %d, ended %v)", k, s.packets, s.keyframes, s.ended))
	}
	var types []string
	for _, m := range c.msgs {
		types = append(types, m.Type+":"+m.Code+m.Reason)
	}
	return fmt.Sprintf("tracks [%s], messages %v", strings.Join(parts, " "), types)
}

// stats returns a copy of what c received from user's kind track.
func (c *testClient) stats(user, kind string) recvStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.recv[user+"/"+kind]; s != nil {
		return *s
	}
	return recvStats{}
}

// waitPackets waits until c received at least n more packets of kind from
// user than it had in base.
func (c *testClient) waitPackets(user, kind string, n int) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%d %s packets from %s", n, kind, user), func() bool {
		s := c.recv[user+"/"+kind]
		return s != nil && s.packets >= n
	})
}

// waitMore waits for n packets beyond the current count.
func (c *testClient) waitMore(user, kind string, n int) {
	c.t.Helper()
	base := c.stats(user, kind).packets
	c.waitPackets(user, kind, base+n)
}

// waitMessage waits for a server message satisfying match, after the first
// `after` messages.
func (c *testClient) waitMessage(desc string, after int, match func(serverMsg) bool) serverMsg {
	c.t.Helper()
	var found serverMsg
	c.waitFor(desc, func() bool {
		for _, m := range c.msgs[min(after, len(c.msgs)):] {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

func (c *testClient) msgCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *testClient) readTrack(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
	key := tr.StreamID() + "/" + tr.Kind().String()
	from := tr.StreamID()
	kind := tr.Kind().String()
	c.update(func() {
		if c.recv[key] == nil || c.recv[key].ended {
			c.recv[key] = &recvStats{}
		}
		c.recv[key].ssrc = uint32(tr.SSRC())
	})
	var twccID uint8
	if rcv != nil {
		for _, e := range rcv.GetParameters().HeaderExtensions {
			if e.URI == sdp.TransportCCURI {
				twccID = uint8(e.ID)
			}
		}
	}
	if c.opts.tap != nil {
		c.opts.tap.add(uint32(tr.SSRC()), c, from, kind, int64(tr.Codec().ClockRate), twccID)
	}
	buf := make([]byte, 1500)
	var p rtp.Packet
	first := true
	seenKey := false
	var lastPLI time.Time
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			if n > 0 {
				continue
			}
			c.update(func() {
				if s := c.recv[key]; s != nil && s.ssrc == uint32(tr.SSRC()) {
					s.ended = true
				}
			})
			return
		}
		if c.opts.onPacket != nil {
			// Benchmark clients only read the trailer (the packets carry no
			// padding) and the transport-wide sequence number.
			now := time.Now()
			if n >= 12+trailerLen {
				c.opts.onPacket(from, kind, int64(binary.BigEndian.Uint64(buf[n-trailerLen:n])), now)
			}
			if c.twcc != nil && twccID != 0 {
				var tcc rtp.TransportCCExtension
				if _, err := p.Header.Unmarshal(buf[:n]); err == nil {
					if ext := p.Header.GetExtension(twccID); ext != nil && tcc.Unmarshal(ext) == nil {
						c.twcc.record(uint32(tr.SSRC()), tcc.TransportSequence, now)
					}
				}
			}
			continue
		}
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		var idx uint64
		if len(p.Payload) >= trailerLen {
			idx = binary.BigEndian.Uint64(p.Payload[len(p.Payload)-trailerLen+8:])
		}
		key0 := tr.Kind() == webrtc.RTPCodecTypeVideo && isVP8Keyframe(p.Payload)
		// Like a browser's decoder: video without a keyframe yet asks for one.
		seenKey = seenKey || key0
		if tr.Kind() == webrtc.RTPCodecTypeVideo && !seenKey && now.Sub(lastPLI) > 200*time.Millisecond {
			lastPLI = now
			_ = c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
		}
		isFirst := first
		first = false
		c.update(func() {
			s := c.recv[key]
			if s == nil || s.ssrc != uint32(tr.SSRC()) {
				return
			}
			s.packets++
			s.lastIndex = idx
			if key0 {
				s.keyframes++
			}
			if isFirst {
				s.firstKeyframe = key0
				s.firstSeq = p.SequenceNumber
				s.firstIndex = idx
				s.firstKeySeq = -1
			}
			if key0 && s.firstKeySeq < 0 {
				s.firstKeySeq = int(p.SequenceNumber)
			}
		})
	}
}

func (c *testClient) readSenderRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				c.keyframeWanted.Store(true)
				c.update(func() { c.pliCount++ })
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				c.update(func() { c.remb = append(c.remb, p.Bitrate) })
			case *rtcp.TransportLayerCC:
				n := 0
				for _, d := range p.RecvDeltas {
					if d.Type != rtcp.TypeTCCPacketNotReceived {
						n++
					}
				}
				c.update(func() { c.twccAcks += n })
			}
		}
	}
}

// sendMedia sends Opus-sized audio every 20 ms and VP8-like video at 30 fps:
// a keyframe first and whenever one is requested, delta frames otherwise.
func (c *testClient) sendMedia() {
	frameBytes := c.opts.frameBytes
	if frameBytes == 0 {
		frameBytes = 1000
	}
	audioT := time.NewTicker(20 * time.Millisecond)
	defer audioT.Stop()
	videoT := time.NewTicker(time.Second / 30)
	defer videoT.Stop()
	var aSeq, vSeq uint16
	var aTS, vTS uint32
	c.keyframeWanted.Store(true)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.stopMedia:
			return
		case <-audioT.C:
			payload := make([]byte, 80)
			payload[0] = 0xf8 // Opus TOC: CELT fullband 20 ms, one frame
			if ns := c.stamp(payload); c.opts.onSend != nil {
				c.opts.onSend("audio", ns)
			}
			_ = c.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aSeq, Timestamp: aTS}, Payload: payload})
			aSeq++
			aTS += 960
		case <-videoT.C:
			for _, p := range vp8Frame(frameBytes, c.keyframeWanted.Swap(false)) {
				if ns := c.stamp(p.payload); c.opts.onSend != nil {
					c.opts.onSend("video", ns)
				}
				_ = c.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vSeq, Timestamp: vTS, Marker: p.last}, Payload: p.payload})
				vSeq++
			}
			vTS += 3000
		}
	}
}

func (c *testClient) stamp(payload []byte) int64 {
	tail := payload[len(payload)-trailerLen:]
	ns := time.Now().UnixNano()
	binary.BigEndian.PutUint64(tail, uint64(ns))
	binary.BigEndian.PutUint64(tail[8:], c.index.Add(1))
	return ns
}

type vp8Packet struct {
	payload []byte
	last    bool
}

// vp8Frame splits a synthetic VP8 frame of size bytes into packets of at most
// 1100 bytes, each with a one-byte VP8 payload descriptor. A keyframe starts
// with a real key frame header (frame tag, start code, 640x480).
func vp8Frame(size int, key bool) []vp8Packet {
	const maxChunk = 1100
	frame := make([]byte, size)
	if key {
		copy(frame, []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}) // P=0, show_frame
	} else {
		frame[0] = 0x11 // P=1: inter frame
	}
	var out []vp8Packet
	for off := 0; off < len(frame); off += maxChunk {
		end := min(off+maxChunk, len(frame))
		desc := byte(0x00)
		if off == 0 {
			desc = 0x10 // S: start of partition 0
		}
		p := append([]byte{desc}, frame[off:end]...)
		p = append(p, make([]byte, trailerLen)...)
		out = append(out, vp8Packet{payload: p, last: end == len(frame)})
	}
	return out
}

// leave sends "leave"; the server then closes the socket.
func (c *testClient) leave() {
	c.mu.Lock()
	if c.dropped == nil {
		c.dropped = map[*websocket.Conn]bool{}
	}
	c.dropped[c.ws] = true
	c.mu.Unlock()
	c.send(map[string]string{"type": "leave"})
}

// dropSignal closes the WebSocket without a close handshake, like a network change.
func (c *testClient) dropSignal() {
	c.mu.Lock()
	ws := c.ws
	if c.dropped == nil {
		c.dropped = map[*websocket.Conn]bool{}
	}
	c.dropped[ws] = true
	c.mu.Unlock()
	_ = ws.CloseNow()
}

func (c *testClient) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	ws := c.ws
	c.mu.Unlock()
	c.cancel()
	if ws != nil {
		_ = ws.CloseNow()
	}
	// No offer may be in the middle of being answered when the connection
	// closes: pion can leak an ICE agent created concurrently with Close.
	c.sigWG.Wait()
	_ = c.pc.Close()
	c.wg.Wait()
}

// delaySnapshot is the forwarding delay histogram at one moment.
type delaySnapshot struct {
	bounds []float64 // bucket upper bounds, seconds
	cum    []uint64  // cumulative counts
	count  uint64
}

func snapshotDelay(t testing.TB, m *delayMeter) delaySnapshot {
	var d dto.Metric
	if err := m.hist.Write(&d); err != nil {
		t.Fatal(err)
	}
	h := d.GetHistogram()
	s := delaySnapshot{count: h.GetSampleCount()}
	for _, b := range h.GetBucket() {
		s.bounds = append(s.bounds, b.GetUpperBound())
		s.cum = append(s.cum, b.GetCumulativeCount())
	}
	return s
}

// since returns the samples observed between earlier and s.
func (s delaySnapshot) since(earlier delaySnapshot) delaySnapshot {
	out := delaySnapshot{bounds: s.bounds, cum: make([]uint64, len(s.cum)), count: s.count - earlier.count}
	for i := range s.cum {
		out.cum[i] = s.cum[i]
		if i < len(earlier.cum) {
			out.cum[i] -= earlier.cum[i]
		}
	}
	return out
}

// quantile returns the q-quantile in milliseconds, interpolated within its
// bucket (0 without samples).
func (s delaySnapshot) quantile(q float64) float64 {
	if s.count == 0 {
		return 0
	}
	rank := q * float64(s.count)
	lower, below := 0.0, uint64(0)
	for i, c := range s.cum {
		if float64(c) >= rank {
			in := float64(c - below)
			frac := 1.0
			if in > 0 {
				frac = (rank - float64(below)) / in
			}
			return 1000 * (lower + frac*(s.bounds[i]-lower))
		}
		lower, below = s.bounds[i], c
	}
	return 1000 * lower // beyond the last bucket
}
