package consult

import (
	"encoding/binary"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// enableRecvTimestamps asks the kernel to stamp each datagram u receives
// (SO_TIMESTAMPNS).
func enableRecvTimestamps(u *net.UDPConn) error {
	raw, err := u.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) //nolint:gosec // a descriptor fits in int
	}); err != nil {
		return err
	}
	return serr
}

// recvTimestamp finds the receive timestamp among a read's control messages.
func recvTimestamp(oob []byte) (time.Time, bool) {
	for len(oob) >= unix.CmsgLen(0) {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(data))
			nsec := int64(binary.NativeEndian.Uint64(data[8:]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}
