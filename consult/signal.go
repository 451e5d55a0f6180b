package consult

// Signalling protocol (JSON text messages over one WebSocket per participant)
//
// Connect to GET /api/v1/consults/{id}/signal with a room token, either as the
// query parameter ?token=<jwt> or, from a browser, as a WebSocket subprotocol:
// new WebSocket(url, ["qinba-consult", jwt]) (the server selects "qinba-consult").
// A missing, forged, expired or access-typed token gets HTTP 401 before the
// upgrade; a token for another consult gets 403.
//
// The server always makes the offers and the client always answers, so offers
// never collide. Server candidates are inside each offer (no server trickle);
// client candidates may be trickled or left in the answer.
//
// Client → server:
//
//	{"type":"join","resume":false,"audio_only":false,"max_video_kbps":0}
//	    First message, required within 10 s. resume:true re-attaches to the
//	    user's session that is still in the room (after a network change or a
//	    dropped WebSocket, keeping the same RTCPeerConnection): the server then
//	    sends an ICE-restart offer. resume:false (or no session) starts afresh and
//	    ends any older session of the same user. audio_only and max_video_kbps are
//	    optional initial settings. If the welcome says "resumed":false the
//	    session was gone (e.g. the grace ran out): close the old
//	    RTCPeerConnection and answer the next offer with a new one.
//	{"type":"answer","sdp":"v=0..."}
//	    The answer to the last offer (pc.setRemoteDescription(offer);
//	    pc.createAnswer(); pc.setLocalDescription(answer)).
//	{"type":"candidate","candidate":{"candidate":"candidate:...","sdpMid":"0","sdpMLineIndex":0}}
//	    A trickled local candidate (RTCIceCandidate.toJSON()); optional.
//	{"type":"settings","audio_only":true,"max_video_kbps":300}
//	    Either field may be left out. audio_only: the client receives no video
//	    and its video is not forwarded (it should also stop sending it, e.g.
//	    sender.replaceTrack(null)). max_video_kbps caps the video it receives
//	    (the server asks publishers to stay under the lowest cap with REMB; a
//	    cap under the floor, 100 kbps by default, pauses video instead) and what
//	    it sends; 0 removes the cap.
//	{"type":"restart"}
//	    Ask for an ICE-restart offer (send it when the local ICE state turns
//	    "disconnected" or "failed").
//	{"type":"leave"}
//	    Leave the consult; the server closes the WebSocket.
//
// Server → client:
//
//	{"type":"welcome","consult_id":"c1","user_id":"u1","resumed":false,"can_publish":true,"can_subscribe":true}
//	{"type":"offer","sdp":"v=0..."}
//	    Answer it. The first offer has a recvonly audio and a recvonly video
//	    m-line for the client's microphone and camera (add them with addTrack or
//	    addTransceiver before answering; to turn the camera off and on later use
//	    replaceTrack, no renegotiation is needed), and one sendonly m-line per
//	    track of each other participant. Later offers add tracks of newcomers,
//	    set the m-lines of leavers inactive, or restart ICE. A forwarded track has
//	    stream id = the publisher's user id and track id = "<user id>-audio" or
//	    "<user id>-video".
//	{"type":"participants","participants":[{"user_id":"u2","audio_only":false,"connected":true}]}
//	    Everyone in the room, the client included; sent on every change.
//	{"type":"video","paused":true,"reason":"weak_link"}
//	    Whether the server forwards video to this client, and if not why:
//	    "audio_only", "weak_link" (too much loss on its downlink), "bitrate_cap"
//	    or "no_subscribe_right". Sent on connect and on every change.
//	{"type":"error","code":"room_full","message":"..."}
//	    Codes: bad_message, unexpected_answer, bad_answer (the server will offer
//	    again), room_full, shutting_down, answer_timeout, replaced,
//	    session_ended (a resume came too late: join again with resume:false and
//	    a new RTCPeerConnection), internal.
//	    All but bad_message, unexpected_answer and bad_answer are followed by
//	    the server closing the WebSocket.
//
// The server pings the WebSocket every 20 s. If the WebSocket drops without a
// "leave", the participant keeps its place and media for the reconnect grace
// (30 s by default) and may come back with "join" and resume:true.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"github.com/pion/webrtc/v4"

	"github.com/qinba/qinba/internal/apperr"
)

// SignalSubprotocol is the WebSocket subprotocol of the signalling connection.
// A browser passes the room token as a second subprotocol next to it.
const SignalSubprotocol = "qinba-consult"

// signalReadLimit bounds one client message (an answer for six participants is
// a few tens of kilobytes).
const signalReadLimit = 1 << 20

// clientMessage is any message from the client; see the protocol above.
type clientMessage struct {
	Type         string                   `json:"type"`
	Resume       bool                     `json:"resume,omitempty"`
	AudioOnly    *bool                    `json:"audio_only,omitempty"`
	MaxVideoKbps *int                     `json:"max_video_kbps,omitempty"`
	SDP          string                   `json:"sdp,omitempty"`
	Candidate    *webrtc.ICECandidateInit `json:"candidate,omitempty"`
}

type welcomeMessage struct {
	Type         string `json:"type"`
	ConsultID    string `json:"consult_id"`
	UserID       string `json:"user_id"`
	Resumed      bool   `json:"resumed"`
	CanPublish   bool   `json:"can_publish"`
	CanSubscribe bool   `json:"can_subscribe"`
}

type offerMessage struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

type participantsMessage struct {
	Type         string            `json:"type"`
	Participants []ParticipantInfo `json:"participants"`
}

type videoMessage struct {
	Type   string `json:"type"`
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
}

type errorMessage struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SignalHandler returns the echo handler of GET /api/v1/consults/:id/signal
// (the route parameter must be named "id"). It verifies the room token before
// upgrading to a WebSocket and then serves the participant until the socket
// closes, so it blocks for the length of the call.
func (s *SFU) SignalHandler() echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		consultID := c.Param("id")
		token := roomTokenFromRequest(req)
		if token == "" {
			return apperr.E(apperr.Unauthenticated, "a room token is required")
		}
		grant, err := s.cfg.Tokens.Verify(token, consultID)
		switch {
		case errors.Is(err, ErrTokenWrongConsult):
			return apperr.Wrap(apperr.Forbidden, err, "the room token is for another consult")
		case err != nil:
			return apperr.Wrap(apperr.Unauthenticated, err, "invalid or expired room token")
		}
		if s.cfg.Hooks.Admit != nil {
			if err := s.cfg.Hooks.Admit(req.Context(), consultID, grant.UserID); err != nil {
				if _, ok := apperr.As(err); ok {
					return err
				}
				return apperr.Wrap(apperr.Forbidden, err, "the consult does not admit participants")
			}
		}
		if s.ctx.Err() != nil {
			return apperr.E(apperr.Unavailable, "the media server is shutting down")
		}
		conn, err := websocket.Accept(c.Response(), req, &websocket.AcceptOptions{
			Subprotocols:    []string{SignalSubprotocol},
			OriginPatterns:  s.cfg.OriginPatterns,
			CompressionMode: websocket.CompressionDisabled,
		})
		if err != nil {
			return nil // Accept has written the HTTP error
		}
		s.serveSignal(conn, grant)
		return nil
	}
}

// roomTokenFromRequest takes the token from ?token= or from the subprotocols
// ("qinba-consult", "<jwt>").
func roomTokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			p = strings.TrimSpace(p)
			if p != "" && p != SignalSubprotocol && strings.Count(p, ".") == 2 {
				return p
			}
		}
	}
	return ""
}

// serveSignal runs one signalling connection: it waits for "join", attaches the
// participant and feeds it the client's messages until the socket closes.
func (s *SFU) serveSignal(conn *websocket.Conn, grant RoomGrant) {
	conn.SetReadLimit(signalReadLimit)
	ws := newWSConn(conn, s.log)
	if !s.spawn(func() { ws.writeLoop(s.ctx) }) {
		_ = conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer ws.wait()

	// Reads do not use s.ctx: a cancelled read kills the connection, while on
	// shutdown the writer closes it properly ("going away").
	jctx, cancel := context.WithTimeout(context.Background(), s.cfg.JoinTimeout)
	j, err := readClientMessage(jctx, conn)
	cancel()
	if err != nil {
		if !errors.Is(err, errBadMessage) {
			ws.closeWith(websocket.StatusPolicyViolation, "no join message")
			return
		}
		ws.fail("bad_message", err.Error())
		return
	}
	if j.Type != "join" {
		ws.fail("bad_message", "the first message must be join")
		return
	}
	p, err := s.join(grant, j, ws)
	switch {
	case errors.Is(err, errRoomFull):
		ws.fail("room_full", "the consult already has the maximum number of participants")
		return
	case errors.Is(err, errShuttingDown):
		ws.fail("shutting_down", "the media server is shutting down")
		return
	case err != nil:
		s.log.Error("join", "consult", grant.ConsultID, "user", grant.UserID, "err", err)
		ws.fail("internal", "could not join")
		return
	}
	for {
		m, err := readClientMessage(context.Background(), conn)
		if errors.Is(err, errBadMessage) {
			ws.send(errorMessage{Type: "error", Code: "bad_message", Message: err.Error()})
			continue
		}
		if err != nil {
			break
		}
		p.mb.put(evMessage{ws: ws, msg: m})
	}
	ws.closeWith(websocket.StatusNormalClosure, "")
	p.mb.put(evSockClosed{ws: ws})
}

var errBadMessage = errors.New("bad message")

func readClientMessage(ctx context.Context, conn *websocket.Conn) (clientMessage, error) {
	typ, b, err := conn.Read(ctx)
	if err != nil {
		return clientMessage{}, err
	}
	var m clientMessage
	if typ != websocket.MessageText {
		return m, errors.Join(errBadMessage, errors.New("messages must be text"))
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Type == "" {
		return m, errors.Join(errBadMessage, errors.New("messages must be JSON objects with a type"))
	}
	return m, nil
}

// wsConn serialises writes to a WebSocket on one goroutine. send never blocks:
// a client that stops reading is disconnected.
type wsConn struct {
	c    *websocket.Conn
	log  interface{ Debug(string, ...any) }
	out  chan []byte
	done chan struct{} // writeLoop exited

	mu       sync.Mutex
	closing  bool
	closeReq chan struct{}
	code     websocket.StatusCode
	reason   string
}

func newWSConn(c *websocket.Conn, log interface{ Debug(string, ...any) }) *wsConn {
	return &wsConn{
		c: c, log: log,
		out:      make(chan []byte, 256),
		done:     make(chan struct{}),
		closeReq: make(chan struct{}),
	}
}

// send queues a message.
func (w *wsConn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return
	}
	select {
	case w.out <- b:
	default:
		w.closeLocked(websocket.StatusPolicyViolation, "too slow")
	}
}

// fail sends an error message and closes the socket.
func (w *wsConn) fail(code, msg string) {
	w.send(errorMessage{Type: "error", Code: code, Message: msg})
	w.closeWith(websocket.StatusPolicyViolation, code)
}

// closeWith closes the socket after the queued messages are written.
func (w *wsConn) closeWith(code websocket.StatusCode, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closeLocked(code, reason)
}

func (w *wsConn) closeLocked(code websocket.StatusCode, reason string) {
	if w.closing {
		return
	}
	w.closing, w.code, w.reason = true, code, reason
	close(w.closeReq)
}

// wait blocks until writeLoop has exited.
func (w *wsConn) wait() { <-w.done }

// writeLoop writes queued messages and pings until the socket is closed; it
// closes the socket with "going away" when ctx ends.
func (w *wsConn) writeLoop(ctx context.Context) {
	defer close(w.done)
	stop := ctx.Done()
	ping := time.NewTicker(20 * time.Second)
	defer ping.Stop()
	write := func(b []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return w.c.Write(ctx, websocket.MessageText, b)
	}
	for {
		select {
		case b := <-w.out:
			if err := write(b); err != nil {
				w.log.Debug("websocket write", "err", err)
				w.closeWith(websocket.StatusAbnormalClosure, "")
				_ = w.c.CloseNow()
				return
			}
		case <-stop:
			stop = nil
			w.closeWith(websocket.StatusGoingAway, "server shutting down")
		case <-ping.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := w.c.Ping(ctx)
			cancel()
			if err != nil {
				w.closeWith(websocket.StatusAbnormalClosure, "")
				_ = w.c.CloseNow()
				return
			}
		case <-w.closeReq:
			for {
				select {
				case b := <-w.out:
					if write(b) == nil {
						continue
					}
				default:
				}
				break
			}
			w.mu.Lock()
			code, reason := w.code, w.reason
			w.mu.Unlock()
			if code == websocket.StatusAbnormalClosure {
				_ = w.c.CloseNow()
			} else if err := w.c.Close(code, reason); err != nil {
				_ = w.c.CloseNow()
			}
			return
		}
	}
}
