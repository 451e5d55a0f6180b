package consult

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// benchTap is how the benchmark clients receive media: at their socket, as
// a packet capture would, instead of through pion's receive chain. SRTP
// leaves the RTP header in the clear (RFC 3711), and the header is all a
// measuring receiver needs: the SSRC says which subscriber and track a
// packet is for, the sequence number counts it, the transport-wide sequence
// number goes into the client's TWCC feedback, and the RTP timestamp, which
// the benchmark sender sets from the send time (benchRTPTime) and the server
// forwards unchanged, gives the delay. Decrypting and handing each packet
// through pion's goroutines is a receiver's own work, done on its own device
// in a real consult; on this machine it took about half of the clients' CPU
// from the two cores the server is measured on.
//
// A stream's first packets still go through pion, so that OnTrack fires and
// the client's track reader registers the stream (add); from then on the tap
// takes its packets. The tap also keeps what a receiver report needs, and the
// clients send one per second (reports), since pion's receiver report
// interceptor no longer sees the packets.
type benchTap struct {
	mu      sync.Mutex
	streams map[uint32]*tapStream // by SSRC, unique per subscriber and track
	hdr     rtp.Header            // reused by take, under mu
}

// tapStream is one track as one client receives it.
type tapStream struct {
	c      *testClient
	from   string // publisher
	kind   string
	clock  int64 // RTP clock rate
	twccID uint8 // transport-cc header extension id, 0 if none

	// Receiver report state (RFC 3550 A.1, A.3, A.8).
	started          bool
	baseSeq, maxSeq  uint16
	cycles           uint32
	received         uint32
	expectedPrior    uint32
	receivedPrior    uint32
	transit, jitter  float64 // in RTP clock units
	lastArrivalClock int64
}

func newBenchTap() *benchTap {
	return &benchTap{streams: map[uint32]*tapStream{}}
}

// benchEpoch is the origin of the RTP timestamps the benchmark sends.
var benchEpoch = time.Now()

// benchRTPTime is the RTP timestamp of a packet sent at ns (Unix
// nanoseconds) on a clock of the given rate. It wraps after 2^32 ticks
// (over 13 hours at 90 kHz), longer than any benchmark.
func benchRTPTime(ns, clock int64) uint32 {
	return uint32((ns - benchEpoch.UnixNano()) * clock / 1e9) //nolint:gosec // wraps on purpose, like any RTP clock
}

// benchSendNs is the send time a benchmark RTP timestamp stands for, up to
// one tick (11 µs at 90 kHz, 21 µs at 48 kHz) earlier than the real one.
func benchSendNs(ts uint32, clock int64) int64 {
	return benchEpoch.UnixNano() + int64(ts)*1e9/clock
}

// add hands the stream with this SSRC, now known to client c, to the tap.
func (b *benchTap) add(ssrc uint32, c *testClient, from, kind string, clock int64, twccID uint8) {
	b.mu.Lock()
	b.streams[ssrc] = &tapStream{c: c, from: from, kind: kind, clock: clock, twccID: twccID}
	b.mu.Unlock()
}

// take accounts a datagram received at at and reports whether the tap
// consumed it; anything not a packet of a known stream goes on to pion.
func (b *benchTap) take(d []byte, at time.Time) bool {
	if !isRTP(d) {
		return false
	}
	b.mu.Lock()
	s := b.streams[binary.BigEndian.Uint32(d[8:])]
	if s == nil {
		b.mu.Unlock()
		return false
	}
	if _, err := b.hdr.Unmarshal(d); err != nil {
		b.mu.Unlock()
		return true // malformed: dropped, as pion would
	}
	h := &b.hdr
	s.update(h.SequenceNumber, h.Timestamp, at)
	var tseq uint16
	var hasTCC bool
	if s.twccID != 0 {
		if ext := h.GetExtension(s.twccID); len(ext) >= 2 {
			tseq, hasTCC = binary.BigEndian.Uint16(ext), true
		}
	}
	c, from, kind, sendNs := s.c, s.from, s.kind, benchSendNs(h.Timestamp, s.clock)
	ssrc := h.SSRC
	b.mu.Unlock()

	if c.opts.onPacket != nil {
		c.opts.onPacket(from, kind, sendNs, at)
	}
	if hasTCC && c.twcc != nil {
		c.twcc.record(ssrc, tseq, at)
	}
	return true
}

// update is RFC 3550's per-packet receiver bookkeeping (sequence number
// cycles and interarrival jitter).
func (s *tapStream) update(seq uint16, ts uint32, at time.Time) {
	if !s.started {
		s.started, s.baseSeq, s.maxSeq = true, seq, seq
	} else if d := seq - s.maxSeq; d > 0 && d < 1<<15 {
		if seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = seq
	}
	s.received++
	arrival := at.UnixNano() * s.clock / 1e9
	transit := float64(arrival - int64(ts))
	if s.lastArrivalClock != 0 {
		d := transit - s.transit
		if d < 0 {
			d = -d
		}
		s.jitter += (d - s.jitter) / 16
	}
	s.transit, s.lastArrivalClock = transit, arrival
}

// reports is client c's receiver report on the streams the tap takes for
// it, or nil if there are none yet.
func (b *benchTap) reports(c *testClient) []rtcp.Packet {
	b.mu.Lock()
	defer b.mu.Unlock()
	var rr *rtcp.ReceiverReport
	for ssrc, s := range b.streams {
		if s.c != c || !s.started {
			continue
		}
		extMax := s.cycles | uint32(s.maxSeq)
		expected := extMax - uint32(s.baseSeq) + 1
		lost := int64(expected) - int64(s.received)
		expInterval := expected - s.expectedPrior
		lostInterval := int64(expInterval) - int64(s.received-s.receivedPrior)
		s.expectedPrior, s.receivedPrior = expected, s.received
		var fraction uint8
		if expInterval > 0 && lostInterval > 0 {
			fraction = uint8(min(255, lostInterval<<8/int64(expInterval))) //nolint:gosec // clamped
		}
		if rr == nil {
			rr = &rtcp.ReceiverReport{SSRC: rand.Uint32()}
		}
		rr.Reports = append(rr.Reports, rtcp.ReceptionReport{
			SSRC:               ssrc,
			FractionLost:       fraction,
			TotalLost:          uint32(max(0, min(lost, 1<<23-1))), //nolint:gosec // clamped to 24 bits
			LastSequenceNumber: extMax,
			Jitter:             uint32(s.jitter),
		})
	}
	if rr == nil {
		return nil
	}
	return []rtcp.Packet{rr}
}

// The tap's receiver reports count loss as RFC 3550 does, across a sequence
// number wrap, and its timestamps give back the send time.
func TestBenchTapReports(t *testing.T) {
	tap := newBenchTap()
	c := &testClient{}
	tap.add(42, c, "u1", "video", 90000, 0)
	at := time.Now()
	pkt := func(seq uint16) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, SSRC: 42, Timestamp: benchRTPTime(at.UnixNano(), 90000)}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// 65530..65535, 0..9 with 65533 and 2, 3 lost: 16 expected, 13 received.
	for seq := uint16(65530); seq != 10; seq++ {
		if seq == 65533 || seq == 2 || seq == 3 {
			continue
		}
		if !tap.take(pkt(seq), at) {
			t.Fatalf("packet %d not taken", seq)
		}
	}
	if tap.take(pkt(1)[:8], at) || tap.take([]byte{0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 42}, at) {
		t.Fatal("a short datagram or an RTCP packet was taken")
	}
	rr := tap.reports(c)[0].(*rtcp.ReceiverReport).Reports[0]
	if rr.SSRC != 42 || rr.TotalLost != 3 || rr.LastSequenceNumber != 1<<16|9 || rr.FractionLost != 3*256/16 {
		t.Fatalf("report %+v, want 3 of 16 lost, highest 65545", rr)
	}
	// Nothing new: the next interval has no loss.
	tap.take(pkt(10), at)
	if rr := tap.reports(c)[0].(*rtcp.ReceiverReport).Reports[0]; rr.FractionLost != 0 || rr.TotalLost != 3 {
		t.Fatalf("second report %+v", rr)
	}
	if d := at.UnixNano() - benchSendNs(benchRTPTime(at.UnixNano(), 90000), 90000); d < 0 || d > int64(time.Second)/90000+1 {
		t.Fatalf("send time off by %d ns", d)
	}
}
