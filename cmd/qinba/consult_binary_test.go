package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pion/webrtc/v4"

	"github.com/qinba/qinba/consult"
	"github.com/qinba/qinba/internal/dbtest"
)

// TestBinaryConsultOverTURNWithRecording runs the real binary with its
// consult flags (--turn-addr with the secret from the environment,
// --recordings-dir, --media-loopback) and the demo data. A village doctor
// and a county doctor take room tokens (each with TURN credentials), both
// consent to recording, and connect pion clients that may use relayed
// candidates only, so every packet goes through the embedded TURN server.
// Each receives the other's audio and video; both consent to recording;
// after the consult ends the
// village doctor downloads the county doctor's video recording: a valid
// IVF file with frames.
func TestBinaryConsultOverTURNWithRecording(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewURL(t)
	bin := qinbaBinary(t)
	turnPort := freeUDPPort(t)
	recDir := t.TempDir()
	srv := startServerProc(t, bin, []string{"QINBA_TURN_SECRET=binary-test-turn-secret"},
		"serve", "--addr", "127.0.0.1:0", "--database-url", dbURL, "--var", t.TempDir(), "--seed-demo",
		"--media-loopback", "--turn-addr", "127.0.0.1:"+strconv.Itoa(turnPort), "--recordings-dir", recDir)
	api := newAPIClient(srv.Base)
	vil := api.loginAs(t, "demo.village", demoPassword)
	doc := api.loginAs(t, "demo.county", demoPassword)
	ctx := context.Background()

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var person int64
	if err := conn.QueryRow(ctx, `SELECT p.id FROM person p JOIN household h ON h.id = p.household_id
		WHERE h.village_code = 'V420626-001' ORDER BY p.id LIMIT 1`).Scan(&person); err != nil {
		t.Fatal(err)
	}
	var dUserID int64
	if err := conn.QueryRow(ctx, `SELECT id FROM app_user WHERE username = 'demo.county'`).Scan(&dUserID); err != nil {
		t.Fatal(err)
	}
	call := func(method, path, tok string, body any, want int) []byte {
		t.Helper()
		st, b, err := api.call(ctx, method, path, tok, nil, body)
		if err != nil || st != want {
			t.Fatalf("%s %s: %d %s %v", method, path, st, b, err)
		}
		return b
	}
	var con struct{ ID int64 }
	if err := json.Unmarshal(call("POST", "/api/v1/consults", vil, map[string]any{"person_id": person, "to_facility": "K420626-01",
		"reason": "高血压控制不佳，请县医院会诊"}, http.StatusCreated), &con); err != nil || con.ID == 0 {
		t.Fatalf("create consult: %v", err)
	}
	path := fmt.Sprintf("/api/v1/consults/%d", con.ID)
	token := func(tok string) consult.TokenResponse {
		t.Helper()
		var tr consult.TokenResponse
		if err := json.Unmarshal(call("POST", path+"/token", tok, nil, http.StatusOK), &tr); err != nil {
			t.Fatal(err)
		}
		if len(tr.ICEServers) != 1 || !strings.HasPrefix(tr.ICEServers[0].URLs[0], "turn:127.0.0.1:"+strconv.Itoa(turnPort)) ||
			tr.ICEServers[0].Username == "" || tr.ICEServers[0].Credential == "" {
			t.Fatalf("room token without TURN credentials: %+v", tr.ICEServers)
		}
		return tr
	}
	relayOnly := func(tr consult.TokenResponse) webrtc.Configuration {
		cfg := webrtc.Configuration{ICETransportPolicy: webrtc.ICETransportPolicyRelay}
		for _, s := range tr.ICEServers {
			cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
		}
		return cfg
	}
	vTok, dTok := token(vil), token(doc)

	vc := conConnect(t, srv.Base, relayOnly(vTok), con.ID, vTok.UserID, vTok.Token)
	dc := conConnect(t, srv.Base, relayOnly(dTok), con.ID, dTok.UserID, dTok.Token)
	for _, c := range []struct {
		c    *conClient
		from string
	}{{vc, dTok.UserID}, {dc, vTok.UserID}} {
		c.c.waitRecv(c.from, "video", 100)
		c.c.waitRecv(c.from, "audio", 100)
		pair, err := c.c.pc.GetSenders()[0].Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("%s: selected pair %v (%v), want a relayed local candidate", c.c.name, pair, err)
		}
	}
	// Recording, once the consult is live and both consent; then more
	// media, so that the recording has frames.
	call("POST", path+"/recording", vil, map[string]bool{"consent": true}, http.StatusOK)
	call("POST", path+"/recording", doc, map[string]bool{"consent": true}, http.StatusOK)
	vc.waitRecv(dTok.UserID, "video", 300)
	call("POST", path+"/end", doc, nil, http.StatusOK)
	vc.close()
	dc.close()

	// The county doctor's video, as the village doctor downloads it.
	var recs consult.RecordingsResponse
	deadline := time.Now().Add(conWait)
	var video *consult.Recording
	for video == nil {
		if err := json.Unmarshal(call("GET", path+"/recordings", vil, nil, http.StatusOK), &recs); err != nil {
			t.Fatal(err)
		}
		for i, r := range recs.Recordings {
			if r.Kind == "video" && !r.EndedAt.IsZero() && r.Size > 0 && r.UserID != nil && *r.UserID == dUserID {
				video = &recs.Recordings[i]
			}
		}
		if video == nil && time.Now().After(deadline) {
			t.Fatalf("no finished video recording of %s: %+v", dTok.UserID, recs.Recordings)
		}
		if video == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	ivf := call("GET", fmt.Sprintf("%s/recordings/%d", path, video.ID), vil, nil, http.StatusOK)
	frames, err := ivfFrames(ivf)
	if err != nil || frames < 50 || int64(frames) != video.Frames {
		t.Fatalf("IVF: %d frames (listed %d), %v", frames, video.Frames, err)
	}
	// The media server measured how long it held the packets it relayed.
	res, err := http.Get(srv.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`(?m)^qinba_consult_forward_delay_seconds_count (\d+)$`).FindSubmatch(metrics)
	if err != nil || m == nil || string(m[1]) == "0" {
		t.Fatalf("forwarding delay on /metrics: %q, %v", m, err)
	}
}

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// ivfFrames checks an IVF file's header (VP8) and counts its frames.
func ivfFrames(b []byte) (int, error) {
	if len(b) < 32 || string(b[:4]) != "DKIF" || string(b[8:12]) != "VP80" {
		return 0, fmt.Errorf("not a VP8 IVF file (%d bytes)", len(b))
	}
	hdr := int(binary.LittleEndian.Uint16(b[6:8]))
	n := 0
	for off := hdr; off < len(b); n++ {
		if off+12 > len(b) {
			return n, fmt.Errorf("frame %d: truncated header", n)
		}
		size := int(binary.LittleEndian.Uint32(b[off : off+4]))
		off += 12 + size
		if off > len(b) {
			return n, fmt.Errorf("frame %d: truncated (%d bytes)", n, size)
		}
	}
	return n, nil
}

// serve refuses consult settings that cannot work, naming the flag.
func TestConsultConfigValidate(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", 16)
	for _, c := range []struct {
		cfg  ConsultConfig
		want string // "" = valid
	}{
		{ConsultConfig{}, ""},
		{ConsultConfig{TURNAddr: "127.0.0.1:3478", TURNSecret: secret}, ""},
		{ConsultConfig{TURNAddr: "0.0.0.0:3478", TURNSecret: secret, PublicIP: "203.0.113.7"}, ""},
		{ConsultConfig{TURNAddr: "127.0.0.1:3478"}, "secret of at least 16 bytes"},
		{ConsultConfig{TURNAddr: "127.0.0.1:3478", TURNSecret: "short"}, "secret of at least 16 bytes"},
		{ConsultConfig{TURNAddr: "0.0.0.0:3478", TURNSecret: secret}, "set --public-ip"},
		{ConsultConfig{TURNAddr: "3478", TURNSecret: secret}, "--turn-addr"},
		{ConsultConfig{PublicIP: "media.example"}, "--public-ip"},
	} {
		err := c.cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
