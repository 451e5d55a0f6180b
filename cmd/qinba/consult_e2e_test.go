package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/qinba/qinba/auth"
)

// conWait bounds every wait of the consult end-to-end test.
const conWait = 20 * time.Second

// conClient is a minimal pion participant speaking the signalling protocol
// of consult/signal.go: it publishes synthetic Opus and VP8 (a keyframe
// every 10 frames) and counts the packets it receives per publisher.
type conClient struct {
	t      *testing.T
	name   string
	pc     *webrtc.PeerConnection
	ws     *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	recv   map[string]int // "<user>/<kind>" → packets
	closed bool
	change chan struct{}
}

func conAPI(t *testing.T) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

// conConnect joins consult id's room on the server at base (http://...)
// with a room token; cfg may name ICE servers and a transport policy.
func conConnect(t *testing.T, base string, cfg webrtc.Configuration, id int64, name, roomToken string) *conClient {
	t.Helper()
	cfg.BundlePolicy = webrtc.BundlePolicyMaxBundle
	pc, err := conAPI(t).NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &conClient{t: t, name: name, pc: pc, ctx: ctx, cancel: cancel, recv: map[string]int{}, change: make(chan struct{})}
	t.Cleanup(c.close)
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", name)
	if err != nil {
		t.Fatal(err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		s, err := pc.AddTrack(tr)
		if err != nil {
			t.Fatal(err)
		}
		c.spawn(func() { // drain RTCP
			buf := make([]byte, 1500)
			for {
				if _, _, err := s.Read(buf); err != nil {
					return
				}
			}
		})
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		key := tr.StreamID() + "/" + tr.Kind().String()
		c.spawn(func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				c.update(func() { c.recv[key]++ })
			}
		})
	})
	u := "ws" + strings.TrimPrefix(base, "http") + fmt.Sprintf("/api/v1/consults/%d/signal?token=%s", id, url.QueryEscape(roomToken))
	dctx, dcancel := context.WithTimeout(ctx, conWait)
	defer dcancel()
	ws, _, err := websocket.Dial(dctx, u, nil)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	ws.SetReadLimit(1 << 20)
	c.ws = ws
	c.write(map[string]any{"type": "join"})
	c.spawn(c.readSignal)
	c.spawn(func() { c.sendMedia(audio, video) })
	return c
}

func (c *conClient) spawn(fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

func (c *conClient) update(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn()
	close(c.change)
	c.change = make(chan struct{})
}

func (c *conClient) write(v any) {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(c.ctx, conWait)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, b)
}

// readSignal answers the server's offers (non-trickle) until the socket
// closes.
func (c *conClient) readSignal() {
	for {
		_, b, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		var m struct{ Type, SDP string }
		if json.Unmarshal(b, &m) != nil || m.Type != "offer" {
			continue
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
			return
		}
		ans, err := c.pc.CreateAnswer(nil)
		if err != nil {
			return
		}
		gathered := webrtc.GatheringCompletePromise(c.pc)
		if err := c.pc.SetLocalDescription(ans); err != nil {
			return
		}
		select {
		case <-gathered:
		case <-c.ctx.Done():
			return
		}
		c.write(map[string]string{"type": "answer", "sdp": c.pc.LocalDescription().SDP})
	}
}

func (c *conClient) sendMedia(audio, video *webrtc.TrackLocalStaticRTP) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var seq uint16
	for n := uint32(0); ; n++ {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		a := make([]byte, 80)
		a[0] = 0xf8 // Opus TOC: CELT fullband 20 ms
		_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 960}, Payload: a})
		v := make([]byte, 400)
		v[0] = 0x10 // VP8 descriptor: start of partition
		if n%10 == 0 {
			copy(v[1:], []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}) // keyframe 640x480
		} else {
			v[1] = 0x11 // inter frame
		}
		_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: n * 1800, Marker: true}, Payload: v})
		seq++
	}
}

// waitRecv waits until c has received n packets of kind from user.
func (c *conClient) waitRecv(user, kind string, n int) {
	c.t.Helper()
	deadline := time.After(conWait)
	for {
		c.mu.Lock()
		got, ch := c.recv[user+"/"+kind], c.change
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			c.t.Fatalf("%s: %d %s packets from %s, want %d (received %v)", c.name, got, kind, user, n, c.recv)
		}
	}
}

func (c *conClient) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	if c.ws != nil {
		_ = c.ws.CloseNow()
	}
	_ = c.pc.Close()
	c.wg.Wait()
}

// TestConsultEndToEnd: a village doctor asks the county for a video
// consult; the county doctor takes a room token; both connect real pion
// clients through the signalling endpoint and each receives the other's
// audio and video; the consult goes live with both as participants; the
// county doctor writes advice and ends it; the fee line exists and a
// referral opens from it. Access tokens are refused on the signalling
// endpoint, and a stranger gets no room token.
func TestConsultEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	vName, _ := ts.user(t, auth.RoleVillageDoctor, facVillage)
	dName, _ := ts.user(t, auth.RoleDoctor, facCounty)
	vil, doc := ts.mint(t, vName), ts.mint(t, dName)
	stranger := ts.as(t, auth.RoleDoctor, facCounty2)
	colleague := ts.as(t, auth.RoleVillageDoctor, facVillage)
	person := refPerson(t, ts, facVillage)

	// Request, with an idempotent retry.
	req := map[string]any{"person_id": person, "to_facility": facCounty, "reason": "胸闷气短两天，心电图 ST 段压低，请上级会诊"}
	resp, raw := ts.raw(t, "POST", "/api/v1/consults", vil, "application/json", req)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	_, con := decodeBody(raw)
	id := int64(con["id"].(float64))
	if con["state"] != "requested" {
		t.Fatalf("new consult: %v", con)
	}
	// Not a higher tier: refused.
	if st, b := ts.do(t, "POST", "/api/v1/consults", vil, map[string]any{"person_id": person, "to_facility": facVillage2, "reason": "x"}); st != http.StatusBadRequest {
		t.Errorf("consult to a village: %d %v", st, b)
	}

	// Room tokens: a stranger sees nothing; a colleague of the requester
	// sees the consult but may not join.
	if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/token", id), stranger, nil); st != http.StatusNotFound {
		t.Errorf("stranger's token: %d %v", st, b)
	}
	if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/token", id), colleague, nil); st != http.StatusForbidden {
		t.Errorf("colleague's token: %d %v", st, b)
	}
	roomTok := func(tok token) map[string]any {
		t.Helper()
		st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/token", id), tok, nil)
		if st != http.StatusOK || b["token"] == "" || b["signal_url"] != fmt.Sprintf("/api/v1/consults/%d/signal", id) {
			t.Fatalf("token: %d %v", st, b)
		}
		return b
	}
	vTok, dTok := roomTok(vil), roomTok(doc)

	// The signalling endpoint refuses access tokens (as ?token= or as a
	// bearer), and the API refuses room tokens.
	signal := fmt.Sprintf("/api/v1/consults/%d/signal", id)
	if r, b := ts.raw(t, "GET", signal+"?token="+url.QueryEscape(vil.Access), token{}, "", nil); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token as room token: %d %s", r.StatusCode, b)
	}
	if r, b := ts.raw(t, "GET", signal, vil, "", nil); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token as bearer on the signal endpoint: %d %s", r.StatusCode, b)
	}
	if st, b := ts.do(t, "GET", fmt.Sprintf("/api/v1/consults/%d", id), bearer(vTok["token"].(string)), nil); st != http.StatusUnauthorized {
		t.Errorf("room token on the API: %d %v", st, b)
	}

	// Both connect; each receives the other's audio and video.
	vc := conConnect(t, ts.URL, webrtc.Configuration{}, id, vName, vTok["token"].(string))
	dc := conConnect(t, ts.URL, webrtc.Configuration{}, id, dName, dTok["token"].(string))
	vc.waitRecv(dName, "video", 20)
	vc.waitRecv(dName, "audio", 20)
	dc.waitRecv(vName, "video", 20)
	dc.waitRecv(vName, "audio", 20)

	st, got := ts.do(t, "GET", fmt.Sprintf("/api/v1/consults/%d", id), doc, nil)
	if st != http.StatusOK || got["state"] != "live" || got["started_at"] == nil {
		t.Fatalf("consult after joining: %d %v", st, got)
	}
	if ps, _ := got["participants"].([]any); len(ps) != 2 {
		t.Errorf("participants: %v", got["participants"])
	}

	// Advice, then the end: the room closes and the fee line is written.
	if st, b := ts.do(t, "PUT", fmt.Sprintf("/api/v1/consults/%d/notes", id), vil, map[string]string{"advice": "x"}); st != http.StatusForbidden {
		t.Errorf("village doctor writes notes: %d %v", st, b)
	}
	if st, b := ts.do(t, "PUT", fmt.Sprintf("/api/v1/consults/%d/notes", id), doc, map[string]string{"notes": "考虑不稳定型心绞痛", "advice": "转县医院心内科"}); st != http.StatusOK || b["advice"] != "转县医院心内科" {
		t.Fatalf("notes: %d %v", st, b)
	}
	if st, b := ts.do(t, "GET", fmt.Sprintf("/api/v1/consults/%d/fee", id), vil, nil); st != http.StatusNotFound {
		t.Errorf("fee before the end: %d %v", st, b)
	}
	if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/end", id), doc, nil); st != http.StatusOK || b["state"] != "ended" {
		t.Fatalf("end: %d %v", st, b)
	}
	if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/end", id), vil, nil); st != http.StatusConflict {
		t.Errorf("end twice: %d %v", st, b)
	}
	if st, b := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/token", id), vil, nil); st != http.StatusConflict {
		t.Errorf("token after the end: %d %v", st, b)
	}
	st, fee := ts.do(t, "GET", fmt.Sprintf("/api/v1/consults/%d/fee", id), doc, nil)
	if st != http.StatusOK || fee["item_code"] != "310000001-YC2" || fee["amount"] != "30.00" || fee["facility"] != facCounty || fee["person_id"] != float64(person) {
		t.Errorf("fee: %d %v", st, fee)
	}

	// One click: a referral from the consult.
	st, ref := ts.do(t, "POST", fmt.Sprintf("/api/v1/consults/%d/referral", id), vil, map[string]any{"urgency": "urgent", "diagnoses": []string{"I20.0"}})
	if st != http.StatusCreated || ref["consult_id"] != float64(id) || ref["person_id"] != float64(person) {
		t.Errorf("referral from the consult: %d %v", st, ref)
	}
}
