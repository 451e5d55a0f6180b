package consult

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"golang.org/x/net/ipv4"
)

// benchUDPConn is the UDP socket that all benchmark clients of one engine
// share through pion's ICE UDP mux. Each client still has its own 5-tuple,
// because the server gives every connection a socket of its own. The socket
// moves datagrams in batches (golang.org/x/net/ipv4: recvmmsg and sendmmsg on
// Linux, one datagram at a time elsewhere), which cuts the clients' system
// calls about five times and their wake-ups (the CPU saved is small: most of
// a datagram's cost is the kernel's per-datagram work, which batching keeps):
//
//   - ReadFrom serves datagrams from a batch read, after the benchmark's tap
//     has taken the media it measures; only the mux's reader goroutine calls
//     it.
//   - Between cork and uncork (the sender's pass over all clients), writes
//     are queued and uncork sends them as one batch. Writes at other times
//     (RTCP from pion's goroutines) go out at once.
type benchUDPConn struct {
	*net.UDPConn
	pc *ipv4.PacketConn

	rmsgs  []ipv4.Message // read by the mux's reader only
	rn, ri int
	tap    *benchTap // takes the media it knows; nil: all goes to pion

	mu     sync.Mutex // guards corked, queue and free
	corked bool
	queue  []ipv4.Message
	free   [][]byte
}

const benchReadBatch = 64

// newBenchUDPMux makes a shared socket on a free IPv4 loopback port and the
// ICE UDP mux over it; closing the mux closes the socket. The tap, if not nil,
// sees every datagram first, with the kernel's receive time where the system
// gives one.
func newBenchUDPMux(tap *benchTap) (*benchUDPConn, ice.UDPMux, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetReadBuffer(8 << 20)
	_ = c.SetWriteBuffer(8 << 20)
	b := &benchUDPConn{UDPConn: c, pc: ipv4.NewPacketConn(c), rmsgs: make([]ipv4.Message, benchReadBatch), tap: tap}
	if tap != nil {
		_ = enableRecvTimestamps(c)
	}
	for i := range b.rmsgs {
		b.rmsgs[i].Buffers = [][]byte{make([]byte, 8192)} // ICE's receive MTU
		b.rmsgs[i].OOB = make([]byte, 64)
	}
	return b, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: b}), nil
}

// ReadFrom returns the next datagram of the current batch that the tap (if
// any) does not take, reading a new batch when it is used up; one goroutine
// only.
func (b *benchUDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		for b.ri >= b.rn {
			n, err := b.pc.ReadBatch(b.rmsgs, 0)
			if err != nil {
				return 0, nil, err
			}
			b.rn, b.ri = n, 0
		}
		m := &b.rmsgs[b.ri]
		b.ri++
		d := m.Buffers[0][:m.N]
		if b.tap != nil {
			at, ok := recvTimestamp(m.OOB[:m.NN])
			if !ok {
				at = time.Now()
			}
			if b.tap.take(d, at) {
				continue
			}
		}
		return copy(p, d), m.Addr, nil
	}
}

// WriteTo sends p, or queues it while the sender's pass is corked.
func (b *benchUDPConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	b.mu.Lock()
	if b.corked && len(p) > 0 {
		var buf []byte
		if k := len(b.free); k > 0 {
			buf, b.free = b.free[k-1][:0], b.free[:k-1]
		}
		b.queue = append(b.queue, ipv4.Message{Buffers: [][]byte{append(buf, p...)}, Addr: addr})
		b.mu.Unlock()
		return len(p), nil
	}
	b.mu.Unlock()
	return b.UDPConn.WriteTo(p, addr)
}

// WriteToAddrPort is WriteTo for callers that have an AddrPort.
func (b *benchUDPConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	return b.WriteTo(p, net.UDPAddrFromAddrPort(addr))
}

// cork starts queueing writes; only the benchmark sender corks.
func (b *benchUDPConn) cork() {
	b.mu.Lock()
	b.corked = true
	b.mu.Unlock()
}

// uncork sends everything queued since cork, in batches.
func (b *benchUDPConn) uncork() {
	b.mu.Lock()
	b.corked = false
	q := b.queue
	b.queue = nil
	b.mu.Unlock()
	for sent := 0; sent < len(q); {
		n, err := b.pc.WriteBatch(q[sent:], 0)
		if err != nil {
			n = max(n, 1) // drop a datagram the kernel refuses, as a failed write would
		}
		sent += n
	}
	b.mu.Lock()
	for _, m := range q {
		b.free = append(b.free, m.Buffers[0])
	}
	if b.queue == nil {
		b.queue = q[:0]
	}
	b.mu.Unlock()
}
