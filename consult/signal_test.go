package consult

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/qinba/qinba/internal/apperr"
)

// A forged, expired, other-consult or access-token-typed token is refused
// before the WebSocket upgrade.
func TestSignalRefusesBadTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	now := time.Now()
	forger := newMemKeys(t, "k1") // same kid, different key
	forged, _, err := mustTokens(t, forger, nil).Issue(RoomGrant{ConsultID: "c1", UserID: "u1", Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	past := func() time.Time { return now.Add(-time.Hour) }
	expired, _, err := mustTokens(t, b.keys, past).Issue(RoomGrant{ConsultID: "c1", UserID: "u1", Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := b.tokens.Issue(RoomGrant{ConsultID: "c2", UserID: "u1", Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	// An access token: same key and issuer, typ at+jwt, the API audience.
	at := jwt.NewWithClaims(jwt.SigningMethodEdDSA, roomClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "qinba-test", Subject: "u1", Audience: jwt.ClaimStrings{DefaultRoomAudience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
		},
		ConsultID: "c1", Publish: true,
	})
	at.Header["typ"] = "at+jwt"
	at.Header["kid"] = "k1"
	access, err := at.SignedString(b.keys.priv)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, token string
		status      int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"forged", forged, http.StatusUnauthorized},
		{"expired", expired, http.StatusUnauthorized},
		{"access token", access, http.StatusUnauthorized},
		{"other consult", other, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, b.signalURL("c1", tt.token), nil)
			if err == nil {
				_ = ws.CloseNow()
				t.Fatal("dial succeeded")
			}
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("response = %v, want status %d (err %v)", resp, tt.status, err)
			}
		})
	}
	if len(b.sfu.Participants("c1")) != 0 {
		t.Error("a refused client is in the room")
	}
}

func mustTokens(t *testing.T, keys KeySource, now func() time.Time) *RoomTokens {
	t.Helper()
	tk, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: "qinba-test", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// A browser passes the token as a subprotocol; the server selects ours.
func TestSignalTokenAsSubprotocol(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	c := b.connect(t, "c1", "u1", clientOpts{subprotocol: true, noPublish: true})
	c.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
	if got := c.ws.Subprotocol(); got != SignalSubprotocol {
		t.Errorf("subprotocol = %q, want %q", got, SignalSubprotocol)
	}
}

func TestSignalRoomFull(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sfu: func(c *SFUConfig) { c.MaxParticipants = 2 }})
	for _, u := range []string{"u1", "u2"} {
		c := b.connect(t, "c1", u, clientOpts{noPublish: true})
		c.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
	}
	c := b.connect(t, "c1", "u3", clientOpts{noPublish: true})
	c.waitMessage("room_full", 0, func(m serverMsg) bool { return m.Type == "error" && m.Code == "room_full" })
}

func TestSignalFirstMessageMustBeJoin(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, b.signalURL("c1", b.token(t, "c1", "u1")), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"answer","sdp":"x"}`)); err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"error","code":"bad_message","message":"the first message must be join"}`; string(msg) != want {
		t.Errorf("got %s, want %s", msg, want)
	}
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("read after error: %v, want close 1008", err)
	}
}

// The Admit hook can refuse a consult (e.g. one that has ended) despite a valid token.
func TestSignalAdmitHook(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sfu: func(c *SFUConfig) {
		c.Hooks.Admit = func(_ context.Context, consultID, _ string) error {
			switch consultID {
			case "ended":
				return apperr.E(apperr.Conflict, "the consult has ended")
			case "broken":
				return errors.New("database down")
			}
			return nil
		}
	}})
	for consult, status := range map[string]int{"ended": http.StatusConflict, "broken": http.StatusForbidden} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		ws, resp, err := websocket.Dial(ctx, b.signalURL(consult, b.token(t, consult, "u1")), nil)
		cancel()
		if err == nil {
			_ = ws.CloseNow()
			t.Fatalf("%s: dial succeeded", consult)
		}
		if resp == nil || resp.StatusCode != status {
			t.Errorf("%s: response %v, want %d", consult, resp, status)
		}
	}
	c := b.connect(t, "open", "u1", clientOpts{noPublish: true})
	c.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
}

// Close disconnects everyone with "going away", waits for its goroutines, and
// later connections are refused.
func TestSFUCloseDisconnects(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	bob.waitPackets("alice", "audio", 5)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.sfu.Close(ctx); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("the signalling connection to close", func() bool { return alice.sigErr != nil })
	if st := websocket.CloseStatus(alice.sigErr); st != websocket.StatusGoingAway {
		t.Errorf("close status %v (%v), want going away", st, alice.sigErr)
	}
	_, resp, err := websocket.Dial(ctx, b.signalURL("c1", b.token(t, "c1", "carol")), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: %v %v, want 503", resp, err)
	}
	for _, ev := range b.hooks.snapshot() {
		if strings.HasPrefix(ev, "leave") || strings.HasPrefix(ev, "empty") {
			t.Errorf("hook %q on shutdown", ev)
		}
	}
}
