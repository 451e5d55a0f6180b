package consult

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST credentials are defined with HMAC-SHA1.
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v4"
)

// ICEServer is one entry of the iceServers list a client passes to
// RTCPeerConnection; its JSON form is the browser's RTCIceServer.
type ICEServer struct {
	// URLs are stun:, turn: or turns: URLs.
	URLs []string `json:"urls"`
	// Username is the TURN username, "expiry:userid" for TURN REST credentials.
	Username string `json:"username,omitempty"`
	// Credential is the TURN password.
	Credential string `json:"credential,omitempty"`
}

// TURNConfig configures the embedded TURN server.
type TURNConfig struct {
	// UDPAddr is the UDP listen address, e.g. "0.0.0.0:3478" (port 0 picks one). Required.
	UDPAddr string
	// TCPAddr is an optional TCP listen address for clients whose UDP is blocked.
	TCPAddr string
	// PublicIP is the address clients reach the server on: it is written in the
	// URLs Credentials returns and in relay candidates. Required.
	PublicIP string
	// RelayBindAddress is where relay sockets are bound; "0.0.0.0" if empty.
	RelayBindAddress string
	// RelayPortMin and RelayPortMax bound the relay ports; both zero means any port.
	RelayPortMin, RelayPortMax uint16
	// Realm is the TURN realm; "qinba" if empty.
	Realm string
	// Secret is the shared secret of TURN REST credentials (at least 16 bytes). Required.
	Secret []byte
	// PeerIPs, when set, are the only peer addresses the server relays to (the SFU's
	// own addresses). When empty, relaying to loopback, private, link-local,
	// multicast and unspecified addresses is refused so the relay cannot reach
	// the internal network.
	PeerIPs []string
	// Now is the clock for credential expiry; time.Now if nil.
	Now func() time.Time
	// Logger receives authentication failures at debug level; slog.Default if nil.
	Logger *slog.Logger
}

// TURNServer is an embedded TURN server (RFC 5766) with time-limited
// per-participant credentials in the TURN REST style:
// username = "<unix expiry>:<user id>", password = base64(HMAC-SHA1(secret, username)).
type TURNServer struct {
	cfg     TURNConfig
	server  *turn.Server
	udpAddr *net.UDPAddr
	tcpAddr *net.TCPAddr
}

// NewTURNServer listens on the configured addresses and starts serving.
// Close stops it.
func NewTURNServer(cfg TURNConfig) (*TURNServer, error) {
	if cfg.UDPAddr == "" {
		return nil, errors.New("consult: TURNConfig.UDPAddr is required")
	}
	publicIP := net.ParseIP(cfg.PublicIP)
	if publicIP == nil {
		return nil, fmt.Errorf("consult: TURNConfig.PublicIP %q is not an IP address", cfg.PublicIP)
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("consult: TURNConfig.Secret must be at least 16 bytes")
	}
	if (cfg.RelayPortMin == 0) != (cfg.RelayPortMax == 0) || cfg.RelayPortMin > cfg.RelayPortMax {
		return nil, errors.New("consult: TURN relay port range is invalid")
	}
	if cfg.RelayBindAddress == "" {
		cfg.RelayBindAddress = "0.0.0.0"
	}
	if cfg.Realm == "" {
		cfg.Realm = "qinba"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var allowed []net.IP
	for _, s := range cfg.PeerIPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("consult: TURN peer IP %q is not an IP address", s)
		}
		allowed = append(allowed, ip)
	}
	t := &TURNServer{cfg: cfg}
	permission := func(_ net.Addr, peer net.IP) bool { return peerAllowed(allowed, peer) }
	relay := func() turn.RelayAddressGenerator {
		if cfg.RelayPortMin != 0 {
			return &turn.RelayAddressGeneratorPortRange{
				RelayAddress: publicIP, Address: cfg.RelayBindAddress,
				MinPort: cfg.RelayPortMin, MaxPort: cfg.RelayPortMax,
			}
		}
		return &turn.RelayAddressGeneratorStatic{RelayAddress: publicIP, Address: cfg.RelayBindAddress}
	}

	pc, err := net.ListenPacket("udp4", cfg.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("consult: TURN listen udp: %w", err)
	}
	t.udpAddr = pc.LocalAddr().(*net.UDPAddr)
	sc := turn.ServerConfig{
		Realm:       cfg.Realm,
		AuthHandler: t.authKey,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc, RelayAddressGenerator: relay(), PermissionHandler: permission,
		}},
	}
	if cfg.TCPAddr != "" {
		ln, err := net.Listen("tcp4", cfg.TCPAddr)
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("consult: TURN listen tcp: %w", err)
		}
		t.tcpAddr = ln.Addr().(*net.TCPAddr)
		sc.ListenerConfigs = []turn.ListenerConfig{{
			Listener: ln, RelayAddressGenerator: relay(), PermissionHandler: permission,
		}}
	}
	t.server, err = turn.NewServer(sc)
	if err != nil {
		_ = pc.Close()
		for _, l := range sc.ListenerConfigs {
			_ = l.Listener.Close()
		}
		return nil, fmt.Errorf("consult: start TURN server: %w", err)
	}
	return t, nil
}

// peerAllowed applies the relay permission policy described at TURNConfig.PeerIPs.
func peerAllowed(allowed []net.IP, peer net.IP) bool {
	if len(allowed) > 0 {
		for _, ip := range allowed {
			if ip.Equal(peer) {
				return true
			}
		}
		return false
	}
	return !(peer.IsLoopback() || peer.IsPrivate() || peer.IsUnspecified() ||
		peer.IsLinkLocalUnicast() || peer.IsLinkLocalMulticast() || peer.IsMulticast())
}

// UDPAddr returns the UDP address the server listens on.
func (t *TURNServer) UDPAddr() *net.UDPAddr { return t.udpAddr }

// Credentials returns an ICE server entry with TURN REST credentials for userID
// that expire after ttl (10 minutes if ttl <= 0). The URLs point at PublicIP.
func (t *TURNServer) Credentials(userID string, ttl time.Duration) ICEServer {
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	username := strconv.FormatInt(t.cfg.Now().Add(ttl).Unix(), 10) + ":" + userID
	s := ICEServer{
		URLs:       []string{fmt.Sprintf("turn:%s?transport=udp", net.JoinHostPort(t.cfg.PublicIP, strconv.Itoa(t.udpAddr.Port)))},
		Username:   username,
		Credential: turnPassword(t.cfg.Secret, username),
	}
	if t.tcpAddr != nil {
		s.URLs = append(s.URLs, fmt.Sprintf("turn:%s?transport=tcp", net.JoinHostPort(t.cfg.PublicIP, strconv.Itoa(t.tcpAddr.Port))))
	}
	return s
}

// authKey is the turn.AuthHandler: it refuses malformed and expired usernames and
// returns the long-term key derived from the REST password for the others (a
// wrong password then fails the message-integrity check).
func (t *TURNServer) authKey(username, realm string, src net.Addr) ([]byte, bool) {
	expiry, user, ok := strings.Cut(username, ":")
	if !ok || user == "" {
		t.cfg.Logger.Debug("turn: malformed username", "username", username, "src", src.String())
		return nil, false
	}
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		t.cfg.Logger.Debug("turn: malformed username", "username", username, "src", src.String())
		return nil, false
	}
	if t.cfg.Now().Unix() >= exp {
		t.cfg.Logger.Debug("turn: expired credentials", "username", username, "src", src.String())
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, turnPassword(t.cfg.Secret, username)), true
}

// turnPassword is base64(HMAC-SHA1(secret, username)).
func turnPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Close stops the server and closes its sockets and allocations.
func (t *TURNServer) Close() error {
	return t.server.Close()
}
