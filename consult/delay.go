package consult

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The forwarding delay is how long the server holds a media packet: from the
// moment the kernel received it on the server's socket (its receive
// timestamp, so time spent queued in the socket counts) to the moment the
// copy for the last of its subscribers has been handed to the kernel. One
// packet in delaySample of every stream is measured, chosen by sequence
// number, so the cost is a map operation per sixteen packets.
const delaySample = 16

// delayMeter measures the forwarding delay into a histogram.
type delayMeter struct {
	hist prometheus.Histogram

	mu      sync.Mutex
	arrived map[uint64]int64 // SSRC<<16 | sequence number → kernel receive time (Unix ns)
}

func newDelayMeter() *delayMeter {
	return &delayMeter{
		hist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "qinba_consult_forward_delay_seconds",
			Help: "Time the media server holds a forwarded RTP packet, from its arrival at the server's socket to its last copy sent (sampled).",
			// 10 µs to 1 s, each bucket 15% wider than the one before: fine
			// enough to read a p99 off.
			Buckets: prometheus.ExponentialBucketsRange(10e-6, 1, 83),
		}),
		arrived: map[uint64]int64{},
	}
}

// isRTP reports whether datagram b is an RTP packet: version 2, and not
// RTCP (packet types 192-223 share the payload-type byte with RTP on one
// port, RFC 5761). SRTP leaves the header in the clear (RFC 3711).
func isRTP(b []byte) bool {
	if len(b) < 12 || b[0]>>6 != 2 {
		return false
	}
	pt := b[1] & 0x7f
	return pt < 64 || pt > 95
}

func delayKey(ssrc uint32, seq uint16) uint64 { return uint64(ssrc)<<16 | uint64(seq) }

// arrive notes the receive time of datagram b if it is a sampled RTP packet.
func (m *delayMeter) arrive(b []byte, at time.Time) {
	if !isRTP(b) {
		return
	}
	seq := binary.BigEndian.Uint16(b[2:])
	if seq%delaySample != 0 {
		return
	}
	k := delayKey(binary.BigEndian.Uint32(b[8:]), seq)
	m.mu.Lock()
	if len(m.arrived) >= 1<<14 {
		clear(m.arrived) // left over by packets never forwarded (no subscriber yet, a publisher gone)
	}
	m.arrived[k] = at.UnixNano()
	m.mu.Unlock()
}

// forwarded observes the delay of packet (ssrc, seq), whose last copy has
// just been sent, if its arrival was noted.
func (m *delayMeter) forwarded(ssrc uint32, seq uint16) {
	if seq%delaySample != 0 {
		return
	}
	k := delayKey(ssrc, seq)
	m.mu.Lock()
	at, ok := m.arrived[k]
	delete(m.arrived, k)
	m.mu.Unlock()
	if ok {
		m.hist.Observe(float64(time.Now().UnixNano()-at) / 1e9)
	}
}

// stampNet is the network pion's ICE agents listen on: the system's, with
// every UDP socket asking the kernel for receive timestamps.
type stampNet struct {
	transport.Net
	m *delayMeter
}

// ListenUDP opens a UDP socket whose reads note the arrival of sampled RTP
// packets (where the system gives receive timestamps; a plain socket
// elsewhere).
func (n stampNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	u, ok := c.(*net.UDPConn)
	if !ok || enableRecvTimestamps(u) != nil {
		return c, nil
	}
	return &stampConn{UDPConn: c, udp: u, m: n.m}, nil
}

// stampConn is a UDP socket with receive timestamps. pion reads each socket
// from one goroutine, so one control-message buffer serves every read.
type stampConn struct {
	transport.UDPConn
	udp *net.UDPConn
	m   *delayMeter
	oob [64]byte
}

// ReadFrom is the read pion's ICE agent uses on a socket it did not open
// itself as a *net.UDPConn.
func (c *stampConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, oobn, _, addr, err := c.udp.ReadMsgUDP(b, c.oob[:])
	if err != nil {
		if addr == nil {
			return n, nil, err
		}
		return n, addr, err
	}
	if at, ok := recvTimestamp(c.oob[:oobn]); ok {
		c.m.arrive(b[:n], at)
	}
	return n, addr, nil
}
