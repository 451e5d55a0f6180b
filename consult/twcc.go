package consult

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// The server's TWCC feedback to publishers, so a browser's send-side
// bandwidth estimate sees how its packets arrive (the weak-link uplink case).
//
// It does what pion's twcc.SenderInterceptor does, with pion's twcc.Recorder
// building the feedback, but records arrivals differently. pion's
// interceptor hands every arriving packet to its feedback goroutine over an
// unbuffered channel, so the goroutine forwarding a packet waits until that
// goroutine has taken it: one more goroutine per packet that must get a CPU
// before the packet can be forwarded, which on a busy server is a queue of
// its own. Here the reading goroutine records the arrival itself under a
// mutex, and the feedback goroutine only wakes every interval to send.

// twccFeedbackInterval is how often feedback is sent (pion's default).
const twccFeedbackInterval = 100 * time.Millisecond

// configureTWCCFeedback registers the transport-cc feedback and header
// extension for audio and video, and the feedback interceptor.
func configureTWCCFeedback(me *webrtc.MediaEngine, reg *interceptor.Registry, logs logging.LoggerFactory) error {
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return err
		}
	}
	reg.Add(twccFeedbackFactory{log: logs.NewLogger("twcc")})
	return nil
}

type twccFeedbackFactory struct {
	log logging.LeveledLogger
}

// NewInterceptor makes the interceptor of one peer connection.
func (f twccFeedbackFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccFeedback{log: f.log, arrivals: newTWCCArrivals(), done: make(chan struct{})}, nil
}

// twccFeedback records the arrivals on one peer connection and sends their
// feedback.
type twccFeedback struct {
	interceptor.NoOp
	log      logging.LeveledLogger
	arrivals *twccArrivals

	mu      sync.Mutex
	started bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// BindRTCPWriter starts the feedback goroutine.
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.started {
		return w
	}
	t.started = true
	t.wg.Add(1)
	go t.loop(w)
	return w
}

// BindRemoteStream records the arrival of each packet that carries a
// transport-wide sequence number.
func (t *twccFeedback) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			id = uint8(e.ID) //nolint:gosec // extension ids are 1 to 255
		}
	}
	if id == 0 {
		return r
	}
	ssrc := info.SSRC
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		if a == nil {
			a = interceptor.Attributes{}
		}
		h, err := a.GetRTPHeader(b[:n])
		if err != nil {
			return 0, nil, err
		}
		if ext := h.GetExtension(id); len(ext) >= 2 {
			t.arrivals.record(ssrc, binary.BigEndian.Uint16(ext), time.Now())
		}
		return n, a, nil
	})
}

func (t *twccFeedback) loop(w interceptor.RTCPWriter) {
	defer t.wg.Done()
	tick := time.NewTicker(twccFeedbackInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		pkts := t.arrivals.feedback()
		if len(pkts) == 0 {
			continue
		}
		if _, err := w.Write(pkts, nil); err != nil {
			t.log.Debugf("twcc feedback: %v", err)
		}
	}
}

// Close stops the feedback goroutine.
func (t *twccFeedback) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// twccArrivals is pion's twcc.Recorder made safe for concurrent use:
// arrivals are recorded by the goroutines that read packets, feedback is
// built by another.
type twccArrivals struct {
	mu    sync.Mutex
	rec   *twcc.Recorder
	start time.Time
}

func newTWCCArrivals() *twccArrivals {
	return &twccArrivals{rec: twcc.NewRecorder(rand.Uint32()), start: time.Now()} //nolint:gosec // an SSRC, not a secret
}

// record notes that the packet with transport-wide sequence number seq, of
// stream ssrc, arrived at at.
func (a *twccArrivals) record(ssrc uint32, seq uint16, at time.Time) {
	a.mu.Lock()
	a.rec.Record(ssrc, seq, at.Sub(a.start).Microseconds())
	a.mu.Unlock()
}

// feedback is the feedback on the arrivals since the last call.
func (a *twccArrivals) feedback() []rtcp.Packet {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rec.BuildFeedbackPacket()
}
