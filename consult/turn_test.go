package consult

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v4"
)

var turnSecret = []byte("0123456789abcdef-turn-secret")

func startTURN(t *testing.T) *TURNServer {
	t.Helper()
	ts, err := NewTURNServer(TURNConfig{
		UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0",
		PublicIP: "127.0.0.1", RelayBindAddress: "127.0.0.1",
		PeerIPs: []string{"127.0.0.1"}, Secret: turnSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Close() })
	return ts
}

func TestTURNCredentialsFormat(t *testing.T) {
	t.Parallel()
	ts := startTURN(t)
	before := time.Now()
	s := ts.Credentials("user-1", 5*time.Minute)
	exp, user, ok := strings.Cut(s.Username, ":")
	if !ok || user != "user-1" {
		t.Fatalf("username %q is not expiry:userid", s.Username)
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || e < before.Add(5*time.Minute).Unix() || e > time.Now().Add(5*time.Minute).Unix() {
		t.Errorf("expiry %q is not about 5 minutes away", exp)
	}
	mac := hmac.New(sha1.New, turnSecret)
	mac.Write([]byte(s.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); s.Credential != want {
		t.Errorf("credential = %q, want %q", s.Credential, want)
	}
	if len(s.URLs) != 2 || !strings.HasPrefix(s.URLs[0], "turn:127.0.0.1:") || !strings.HasSuffix(s.URLs[1], "?transport=tcp") {
		t.Errorf("urls = %v", s.URLs)
	}
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for _, bad := range []string{"", "user-1", "abc:user-1", strconv.FormatInt(time.Now().Unix()-1, 10) + ":user-1", exp + ":"} {
		if _, ok := ts.authKey(bad, "qinba", src); ok {
			t.Errorf("authKey accepted %q", bad)
		}
	}
	if _, ok := ts.authKey(s.Username, "qinba", src); !ok {
		t.Error("authKey refused fresh credentials")
	}
	if !peerAllowed(nil, net.ParseIP("8.8.8.8")) || peerAllowed(nil, net.ParseIP("10.0.0.1")) || peerAllowed(nil, net.ParseIP("127.0.0.1")) {
		t.Error("default peer policy is wrong")
	}
}

// A client that may only use relayed candidates joins through the TURN
// server (UDP, then TCP) and exchanges media with a directly connected one.
func TestTURNRelayOnlyClientConnects(t *testing.T) {
	t.Parallel()
	ts := startTURN(t)
	b := setup(t, setupOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	for i, transport := range []string{"udp", "tcp"} {
		creds := ts.Credentials("alice", time.Minute)
		creds.URLs = []string{creds.URLs[i]}
		if !strings.HasSuffix(creds.URLs[0], "transport="+transport) {
			t.Fatalf("url %s is not %s", creds.URLs[0], transport)
		}
		alice := b.connect(t, "c1", "alice", clientOpts{relayOnly: true, iceServers: []ICEServer{creds}})
		alice.waitPackets("bob", "video", 5)
		alice.waitPackets("bob", "audio", 5)
		bob.waitFor("alice's media over "+transport, func() bool {
			a, v := bob.recv["alice/audio"], bob.recv["alice/video"]
			return a != nil && !a.ended && a.packets >= 5 && v != nil && !v.ended && v.packets >= 5
		})
		if ts.server.AllocationCount() == 0 {
			t.Errorf("%s: no TURN allocation", transport)
		}
		alice.leave()
		b.hooks.waitEvent(t, "leave c1 alice left")
		alice.close()
		b.hooks.mu.Lock()
		b.hooks.events = nil // the next round waits for the same event
		b.hooks.mu.Unlock()
	}
}

// Bad or expired credentials get no relay candidate.
func TestTURNRefusesBadCredentials(t *testing.T) {
	t.Parallel()
	ts := startTURN(t)
	good := ts.Credentials("alice", time.Minute)
	good.URLs = good.URLs[:1]

	wrong := good
	wrong.Credential = base64.StdEncoding.EncodeToString(make([]byte, 20))

	expired := good
	expired.Username = strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10) + ":alice"
	mac := hmac.New(sha1.New, turnSecret)
	mac.Write([]byte(expired.Username))
	expired.Credential = base64.StdEncoding.EncodeToString(mac.Sum(nil))

	otherSecret := good
	mac = hmac.New(sha1.New, []byte("another secret entirely"))
	mac.Write([]byte(good.Username))
	otherSecret.Credential = base64.StdEncoding.EncodeToString(mac.Sum(nil))

	for _, tt := range []struct {
		name  string
		creds ICEServer
		relay bool
	}{
		{"good", good, true},
		{"wrong password", wrong, false},
		{"expired", expired, false},
		{"other secret", otherSecret, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := allocate(t, ts, tt.creds)
			if (err == nil) != tt.relay {
				t.Errorf("allocation error = %v, want success %v", err, tt.relay)
			}
		})
	}
}

// allocate asks the TURN server for a relay with creds, as pion's ICE agent does.
func allocate(t *testing.T, ts *TURNServer, creds ICEServer) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	addr := ts.UDPAddr().String()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: creds.Username, Password: creds.Credential,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err == nil {
		_ = relay.Close()
	}
	return err
}
