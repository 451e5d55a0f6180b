//go:build !linux

package consult

import (
	"errors"
	"net"
	"time"
)

// Receive timestamps are read on Linux only; elsewhere the forwarding delay
// is not measured.
func enableRecvTimestamps(*net.UDPConn) error { return errors.New("no receive timestamps") }

func recvTimestamp([]byte) (time.Time, bool) { return time.Time{}, false }
