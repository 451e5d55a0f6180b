package consult

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// This file is the only place that builds pion objects (the webrtc.API with its
// SettingEngine, MediaEngine and interceptors, and the peer connections made from
// it). The SFU sees a participant's connection through the small peer type below.

// Codec payload types offered by the server. Both browsers and pion accept them;
// forwarding rewrites payload types per subscriber anyway.
const (
	payloadTypeOpus = 111
	payloadTypeVP8  = 96
)

// MediaConfig configures the WebRTC engine shared by every peer connection of the SFU.
type MediaConfig struct {
	// LoopbackOnly gathers only IPv4 UDP loopback candidates (tests and benchmarks on a
	// host without other interfaces).
	LoopbackOnly bool
	// UDPPortMin and UDPPortMax bound the UDP ports of ICE host candidates; both zero
	// means ephemeral ports.
	UDPPortMin, UDPPortMax uint16
	// NAT1To1IPs are public addresses that replace the local address in host
	// candidates when the server sits behind a 1:1 NAT (e.g. a cloud VM).
	NAT1To1IPs []string
	// ICEDisconnectedTimeout, ICEFailedTimeout and ICEKeepaliveInterval override
	// pion's ICE timers (5 s, 25 s, 2 s) when non-zero.
	ICEDisconnectedTimeout, ICEFailedTimeout, ICEKeepaliveInterval time.Duration
	// NACKBufferPackets is the number of sent video packets kept per forwarded track
	// to answer NACKs (a power of two, 256 if zero).
	NACKBufferPackets uint16
	// RTCPReportInterval is the interval of RTCP sender and receiver reports (1 s if zero).
	RTCPReportInterval time.Duration
	// Logger receives pion's own logs: its info at debug level, its warnings
	// and errors (mostly noise while connections close) at info level.
	// slog.Default if nil.
	Logger *slog.Logger
	// Metrics, if set, gets the forwarding delay histogram
	// (qinba_consult_forward_delay_seconds).
	Metrics prometheus.Registerer
}

// Media is the WebRTC engine: one webrtc.API (VP8 and Opus; NACK generator and
// responder, RTCP reports, TWCC feedback and TWCC header extension interceptors)
// from which every peer connection is made.
type Media struct {
	cfg   MediaConfig
	api   *webrtc.API
	delay *delayMeter
}

// NewMedia builds the WebRTC engine described by cfg.
func NewMedia(cfg MediaConfig) (*Media, error) {
	if (cfg.UDPPortMin == 0) != (cfg.UDPPortMax == 0) || cfg.UDPPortMin > cfg.UDPPortMax {
		return nil, errors.New("consult: media UDP port range is invalid")
	}
	if cfg.NACKBufferPackets == 0 {
		cfg.NACKBufferPackets = 256
	}
	if cfg.RTCPReportInterval <= 0 {
		cfg.RTCPReportInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	logs := pionLogs{cfg.Logger}

	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		return nil, err
	}

	reg := &interceptor.Registry{}
	// NACK: the generator asks publishers for lost packets, the responder
	// answers subscribers from a per-track buffer.
	if err := webrtc.ConfigureNackWithOptions(me, reg,
		[]nack.GeneratorOption{nack.WithGeneratorLoggerFactory(logs)},
		nack.ResponderSize(cfg.NACKBufferPackets), nack.WithResponderLoggerFactory(logs)); err != nil {
		return nil, fmt.Errorf("consult: nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReportsWithOptions(reg,
		[]report.ReceiverOption{report.ReceiverInterval(cfg.RTCPReportInterval), report.WithReceiverLoggerFactory(logs)},
		report.SenderInterval(cfg.RTCPReportInterval), report.WithSenderLoggerFactory(logs)); err != nil {
		return nil, fmt.Errorf("consult: rtcp reports: %w", err)
	}
	// TWCC: feedback for what publishers send us, and the transport-wide sequence
	// number on what we send so subscribers (browsers) can run send-side BWE.
	if err := configureTWCCFeedback(me, reg, logs); err != nil {
		return nil, fmt.Errorf("consult: twcc feedback: %w", err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		return nil, fmt.Errorf("consult: twcc header: %w", err)
	}

	se := webrtc.SettingEngine{LoggerFactory: logs}
	// The sockets stamp what they receive, to measure the forwarding delay.
	delay := newDelayMeter()
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(delay.hist); err != nil {
			return nil, fmt.Errorf("consult: metrics: %w", err)
		}
	}
	sys, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("consult: network: %w", err)
	}
	se.SetNet(stampNet{Net: sys, m: delay})
	// The server never needs mDNS: it has a routable address, and browsers' .local
	// candidates turn into peer-reflexive ones through connectivity checks.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if cfg.UDPPortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(cfg.UDPPortMin, cfg.UDPPortMax); err != nil {
			return nil, fmt.Errorf("consult: udp port range: %w", err)
		}
	}
	if len(cfg.NAT1To1IPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.NAT1To1IPs, AsCandidateType: webrtc.ICECandidateTypeHost,
		}); err != nil {
			return nil, fmt.Errorf("consult: nat 1:1 addresses: %w", err)
		}
	}
	if cfg.ICEDisconnectedTimeout != 0 || cfg.ICEFailedTimeout != 0 || cfg.ICEKeepaliveInterval != 0 {
		d, f, k := cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout, cfg.ICEKeepaliveInterval
		if d == 0 {
			d = 5 * time.Second
		}
		if f == 0 {
			f = 25 * time.Second
		}
		if k == 0 {
			k = 2 * time.Second
		}
		se.SetICETimeouts(d, f, k)
	}

	return &Media{
		cfg:   cfg,
		api:   webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)),
		delay: delay,
	}, nil
}

// registerCodecs registers the codecs the server offers: Opus and VP8 (with
// REMB and FIR feedback; the interceptors add NACK, PLI and TWCC).
func registerCodecs(me *webrtc.MediaEngine) error {
	videoFB := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: payloadTypeOpus,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return fmt.Errorf("consult: register opus: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB,
		},
		PayloadType: payloadTypeVP8,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("consult: register vp8: %w", err)
	}
	return nil
}

// newPeerConnection makes a bundled, unified-plan peer connection.
func (m *Media) newPeerConnection(iceServers []ICEServer, relayOnly bool) (*webrtc.PeerConnection, error) {
	conf := webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	}
	for _, s := range iceServers {
		conf.ICEServers = append(conf.ICEServers, webrtc.ICEServer{
			URLs: s.URLs, Username: s.Username, Credential: s.Credential,
		})
	}
	if relayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return m.api.NewPeerConnection(conf)
}

// peer is the SFU's side of one participant's connection: the server always
// offers, the participant always answers.
type peer struct {
	pc *webrtc.PeerConnection
}

// newPeer makes the server-side connection of a participant. When publish is
// set it carries one receive-only audio and one receive-only video transceiver,
// onto which the participant's answer puts its microphone and camera.
func (m *Media) newPeer(publish bool) (*peer, error) {
	pc, err := m.newPeerConnection(nil, false)
	if err != nil {
		return nil, err
	}
	if publish {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{
				Direction: webrtc.RTPTransceiverDirectionRecvonly,
			}); err != nil {
				_ = pc.Close()
				return nil, err
			}
		}
	}
	return &peer{pc: pc}, nil
}

// offer creates an offer (restarting ICE if asked), sets it as the local
// description and waits for candidate gathering so the returned SDP is complete
// (the server does not trickle).
func (p *peer) offer(ctx context.Context, iceRestart bool) (string, error) {
	o, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: iceRestart})
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(o); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("consult: gathering candidates: %w", ctx.Err())
	}
	return p.pc.LocalDescription().SDP, nil
}

// setAnswer applies the participant's answer to the last offer.
func (p *peer) setAnswer(sdp string) error {
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

// rollback abandons an offer that was never answered.
func (p *peer) rollback() error {
	if p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return nil
	}
	return p.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
}

// addCandidate adds a trickled remote candidate.
func (p *peer) addCandidate(c webrtc.ICECandidateInit) error {
	return p.pc.AddICECandidate(c)
}

// addDownTrack adds a send-only transceiver carrying d. A new transceiver is used
// each time: pion's AddTrack could reuse a receive-only one and turn it sendrecv.
func (p *peer) addDownTrack(d *downTrack) (*webrtc.RTPSender, error) {
	t, err := p.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{
		Direction: webrtc.RTPTransceiverDirectionSendonly,
	})
	if err != nil {
		return nil, err
	}
	return t.Sender(), nil
}

// removeDownTrack stops sending d; its m-line becomes inactive at the next offer.
func (p *peer) removeDownTrack(s *webrtc.RTPSender) error {
	return p.pc.RemoveTrack(s)
}

// close closes the connection; pion stops its goroutines before returning.
func (p *peer) close() error { return p.pc.Close() }

// isVP8Keyframe reports whether an RTP payload is the first packet of a VP8 key
// frame (RFC 7741 payload descriptor: S=1, PID=0, then P=0 in the frame tag).
func isVP8Keyframe(b []byte) bool {
	if len(b) < 1 {
		return false
	}
	x, s, pid := b[0]&0x80 != 0, b[0]&0x10 != 0, b[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(b) < 2 {
			return false
		}
		ext := b[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id
			if len(b) <= i {
				return false
			}
			if b[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	return len(b) > i && b[i]&0x01 == 0
}

// pliInterval is the shortest time between two keyframe requests sent for one
// published track; requests in between wait (see requestKeyframe).
const pliInterval = 250 * time.Millisecond

// publishedTrack is one track a participant sends to the server, with the
// subscribers it is forwarded to.
type publishedTrack struct {
	owner    *participant
	id       string // track id the subscribers see
	kind     webrtc.RTPCodecType
	mime     string
	ssrc     webrtc.SSRC
	remote   *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver
	delay    *delayMeter

	subsMu sync.Mutex                   // serialises changes to subs
	subs   atomic.Pointer[[]*downTrack] // copy-on-write, read per packet

	lastPLI    atomic.Int64 // unix nanoseconds of the last keyframe request
	pliPending atomic.Bool  // a request waits for pliInterval to pass
	rec        atomic.Pointer[trackRecorder]
}

func (t *publishedTrack) subscribers() []*downTrack {
	if p := t.subs.Load(); p != nil {
		return *p
	}
	return nil
}

func (t *publishedTrack) addSub(d *downTrack) {
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	next := append(slices.Clone(t.subscribers()), d)
	t.subs.Store(&next)
}

func (t *publishedTrack) removeSub(d *downTrack) {
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	next := slices.DeleteFunc(slices.Clone(t.subscribers()), func(x *downTrack) bool { return x == d })
	t.subs.Store(&next)
}

// requestKeyframe sends a PLI to the publisher, at most once per pliInterval;
// a request within the interval is kept pending and sent by the forwarding
// loop when the interval has passed, since the keyframe already asked for may
// come too early for the newest requester.
func (t *publishedTrack) requestKeyframe() {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	t.pliPending.Store(true)
	t.sendPendingPLI()
}

func (t *publishedTrack) sendPendingPLI() {
	now := time.Now().UnixNano()
	last := t.lastPLI.Load()
	if now-last < int64(pliInterval) || !t.lastPLI.CompareAndSwap(last, now) {
		return
	}
	t.pliPending.Store(false)
	_ = t.owner.peer.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.ssrc)}})
}

// forward reads the publisher's packets and writes them to every subscriber
// (and the recorder) until the track ends.
func (t *publishedTrack) forward() {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.remote.Read(buf)
		if err != nil {
			if n == 0 {
				return // closed; per-packet errors (unknown payload type) come with n > 0
			}
			continue
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if t.pliPending.Load() {
			t.sendPendingPLI()
		}
		subs := t.subscribers()
		for _, d := range subs {
			d.write(&pkt)
		}
		if len(subs) > 0 {
			t.delay.forwarded(pkt.SSRC, pkt.SequenceNumber)
		}
		if r := t.rec.Load(); r != nil {
			r.push(&pkt)
		}
	}
}

// drainRTCP reads the publisher's RTCP (sender reports) so the interceptors see
// it and pion's buffer does not fill.
func (t *publishedTrack) drainRTCP() {
	buf := make([]byte, 1500)
	for {
		if _, _, err := t.receiver.Read(buf); err != nil {
			return
		}
	}
}

// trackBinding is what pion hands a downTrack when its sender starts.
type trackBinding struct {
	ssrc uint32
	pt   uint8
	w    webrtc.TrackLocalWriter
}

// downTrack forwards one published track to one subscriber. It implements
// webrtc.TrackLocal. Video is held back until a keyframe after (re)start and
// while the subscriber or the publisher has video off; sequence numbers are
// rewritten so those gaps do not look like loss.
type downTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	mime         string
	src          *publishedTrack
	sub          *participant
	sender       *webrtc.RTPSender // owned by the subscriber's loop

	binding atomic.Pointer[trackBinding]
	keyReq  atomic.Bool // set on Bind: wait for a keyframe

	// Owned by src.forward's goroutine.
	forwarding, needKey, started  bool
	seqOffset, lastSeq, resumeSeq uint16
	hdr                           rtp.Header // reused for every packet written
}

// Bind is called by pion when the subscriber's sender starts.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, d.mime) {
			d.binding.Store(&trackBinding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), w: ctx.WriteStream()})
			d.keyReq.Store(true)
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// Unbind is called by pion when the sender stops.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.binding.Store(nil)
	return nil
}

// ID is the track id the subscriber sees ("<user id>-audio" or "<user id>-video").
func (d *downTrack) ID() string { return d.id }

// RID is empty: no simulcast.
func (d *downTrack) RID() string { return "" }

// StreamID is the publisher's user id, so a client groups a peer's tracks by it.
func (d *downTrack) StreamID() string { return d.streamID }

// Kind is audio or video.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.kind }

// write forwards one packet; called only from src.forward's goroutine.
func (d *downTrack) write(p *rtp.Packet) {
	b := d.binding.Load()
	if b == nil {
		return
	}
	if d.kind == webrtc.RTPCodecTypeVideo {
		if d.keyReq.Swap(false) {
			d.needKey = true
		}
		if !d.sub.recvVideo.Load() || !d.src.owner.sendVideo.Load() {
			d.forwarding = false
			return
		}
		if !d.forwarding {
			d.forwarding, d.needKey = true, true
		}
		if d.needKey {
			if !isVP8Keyframe(p.Payload) {
				d.src.requestKeyframe()
				return
			}
			d.needKey = false
			if d.started {
				d.seqOffset = d.lastSeq + 1 - p.SequenceNumber
			}
			d.resumeSeq = p.SequenceNumber
		} else if int16(p.SequenceNumber-d.resumeSeq) < 0 {
			return // a late packet from before the restart point
		}
	}
	// The header is rebuilt in place: pion's writers do not keep it (the NACK
	// buffer takes a copy), and keeping its extension slice's capacity spares an
	// allocation when the TWCC interceptor adds its sequence number.
	h := &d.hdr
	ext := h.Extensions[:0]
	*h = p.Header
	h.Extension, h.Extensions, h.ExtensionProfile = false, ext, 0 // ids are per connection
	h.SSRC, h.PayloadType = b.ssrc, b.pt
	h.SequenceNumber = p.SequenceNumber + d.seqOffset
	if !d.started || int16(h.SequenceNumber-d.lastSeq) > 0 {
		d.lastSeq = h.SequenceNumber
	}
	d.started = true
	_, _ = b.w.WriteRTP(h, p.Payload)
}

// readRTCP handles the subscriber's feedback on this track until its sender
// stops: keyframe requests go to the publisher, loss and REMB to the weak-link
// monitor. NACKs are answered by the interceptor while this reads.
func (d *downTrack) readRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		n, attrs, err := sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := attrs.GetRTCPPackets(buf[:n]) // parsed once, by the interceptors
		if err != nil {
			continue
		}
		b := d.binding.Load()
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.src.requestKeyframe()
			case *rtcp.ReceiverReport:
				d.observeReports(b, pkt.Reports)
			case *rtcp.SenderReport:
				d.observeReports(b, pkt.Reports)
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				d.sub.observeREMB(float64(pkt.Bitrate))
			}
		}
	}
}

func (d *downTrack) observeReports(b *trackBinding, reports []rtcp.ReceptionReport) {
	if b == nil {
		return
	}
	for _, r := range reports {
		if r.SSRC == b.ssrc {
			d.sub.observeLoss(float64(r.FractionLost) / 256)
		}
	}
}

// pionLogs routes pion's logs to slog (see MediaConfig.Logger). Pion's trace
// and debug logs are dropped: some of them format pion structures without
// pion's locks, which the race detector reports.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) logf(level slog.Level, format string, args ...any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Trace(string)                   {}
func (p pionLogger) Tracef(string, ...any)          {}
func (p pionLogger) Debug(string)                   {}
func (p pionLogger) Debugf(string, ...any)          {}
func (p pionLogger) Info(msg string)                { p.logf(slog.LevelDebug, "%s", msg) }
func (p pionLogger) Infof(format string, a ...any)  { p.logf(slog.LevelDebug, format, a...) }
func (p pionLogger) Warn(msg string)                { p.logf(slog.LevelInfo, "%s", msg) }
func (p pionLogger) Warnf(format string, a ...any)  { p.logf(slog.LevelInfo, format, a...) }
func (p pionLogger) Error(msg string)               { p.logf(slog.LevelInfo, "%s", msg) }
func (p pionLogger) Errorf(format string, a ...any) { p.logf(slog.LevelInfo, format, a...) }
