package consult

// The SFU capacity benchmark. It is a test that skips unless QINBA_SFU_BENCH is
// set, so `go test ./...` stays fast:
//
//	QINBA_SFU_BENCH=1 go test ./consult -run '^TestSFUCapacity$' -count=1 -v -timeout 30m
//
// The test process runs the SFU; it starts a copy of itself (the
// TestSFUCapacityClients test) that runs the participants, so the CPU the
// server uses can be told from the CPU the synthetic clients use. Both share
// the machine's cores. The clients add three-party consults step by step
// (QINBA_SFU_BENCH_STEPS, default 10,20,30,40,50,60), each participant sending
// 500 kbps of fake VP8 (30 fps, 2 packets a frame) and 20 ms Opus-sized audio
// through the server to the two others. After each step settles, a window of
// QINBA_SFU_BENCH_SECONDS (default 10) is measured: packet loss per kind
// (packets sent inside the window that reached each subscriber, against
// twice the packets sent), and the delay from the send time, which the RTP
// timestamp carries, to the kernel's receive time at the receiving client's
// socket (p50/p99). A direct pair of the same clients, without the
// server, is measured first (the "p2p" row: the client path alone on an idle
// machine) and keeps sending during the steps, so every step also reports the
// pair's delay under the same load ("pair p50/p99"): the part of the delay
// that the clients and the shared cores cause without any server.
//
// The server is the production engine (NewMedia, NewSFU). The clients are the
// harness and are kept cheap so that they leave the cores to the server: one
// engine for all of them with only the interceptors that give the server a
// browser's share of work (see newBenchAPI), one UDP socket shared by all of
// them and used in batches (benchUDPConn), all media sent by one goroutine
// from packets built once (benchSender), receivers that read the packets'
// clear RTP headers at the socket instead of decrypting them (benchTap), and
// a client process on one P (QINBA_SFU_BENCH_CLIENT_PROCS to change it).
// The server also measures its own forwarding delay over each window ("srv"
// columns): from the kernel's receive timestamp of a packet on the server's
// socket to the moment its last copy is sent (see delay.go), so the clients'
// share of the delay is left out. QINBA_SFU_BENCH_CLIENT_NICE=19 runs the
// clients at a lower priority and QINBA_SFU_BENCH_CLIENT_CPUS=1 on CPU 1
// only (taskset), closer to a server that has the cores to itself.
// QINBA_SFU_BENCH_PROFILE_DIR=dir writes CPU and heap profiles of both
// processes for each measured window.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const benchIssuer = "qinba-bench"

// benchResult is one measured step, printed by the clients as a JSON line.
type benchResult struct {
	Consults        int     `json:"consults"`
	VideoStreams    int     `json:"forwarded_video_streams"`
	Seconds         float64 `json:"seconds"`
	VideoSent       int64   `json:"video_sent"`
	VideoExpected   int64   `json:"video_expected"`
	VideoReceived   int64   `json:"video_received"`
	AudioExpected   int64   `json:"audio_expected"`
	AudioReceived   int64   `json:"audio_received"`
	VideoLossPct    float64 `json:"video_loss_pct"`
	AudioLossPct    float64 `json:"audio_loss_pct"`
	VideoKbps       float64 `json:"video_kbps_per_publisher"`
	VideoP50ms      float64 `json:"video_p50_ms"`
	VideoP99ms      float64 `json:"video_p99_ms"`
	AudioP50ms      float64 `json:"audio_p50_ms"`
	AudioP99ms      float64 `json:"audio_p99_ms"`
	ServerCPUPct    float64 `json:"server_cpu_pct"` // of one core
	ClientsCPUPct   float64 `json:"clients_cpu_pct"`
	Baseline        bool    `json:"baseline,omitempty"`
	SetupSeconds    float64 `json:"setup_seconds"`
	ForwardedPerSec float64 `json:"forwarded_packets_per_sec"`
	LoadAvg         string  `json:"loadavg"` // /proc/loadavg at the end of the window: other work on the machine
	ServerUsPerPkt  float64 `json:"server_us_per_forwarded_packet"`
	// The direct pair's delay in the same window: the client path alone under
	// the same load, to be compared with the delay through the server.
	PairVideoP50ms float64 `json:"pair_video_p50_ms"`
	PairVideoP99ms float64 `json:"pair_video_p99_ms"`
	PairLossPct    float64 `json:"pair_loss_pct"`
}

func TestSFUCapacity(t *testing.T) {
	if os.Getenv("QINBA_SFU_BENCH") == "" {
		t.Skip("benchmark: set QINBA_SFU_BENCH=1 (make bench)")
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := &memKeys{kid: "bench", priv: priv, pubs: map[string]ed25519.PublicKey{"bench": pub}}
	tokens, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: benchIssuer, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	media, err := NewMedia(MediaConfig{LoopbackOnly: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSFU(SFUConfig{Media: media, Tokens: tokens, Logger: quiet, JoinTimeout: time.Minute, AnswerTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.GET("/api/v1/consults/:id/signal", s.SignalHandler())
	srv := httptest.NewServer(e)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		srv.Close()
	}()

	args := []string{os.Args[0], "-test.run=^TestSFUCapacityClients$", "-test.v", "-test.count=1", "-test.timeout=60m"}
	if n := os.Getenv("QINBA_SFU_BENCH_CLIENT_NICE"); n != "" && n != "0" {
		args = append([]string{"nice", "-n", n}, args...)
	}
	if cpus := os.Getenv("QINBA_SFU_BENCH_CLIENT_CPUS"); cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(),
		"QINBA_SFU_BENCH_CHILD=1",
		"QINBA_SFU_BENCH_URL=ws"+strings.TrimPrefix(srv.URL, "http"),
		"QINBA_SFU_BENCH_KEY="+hex.EncodeToString(priv.Seed()),
	)
	// The clients run on one P unless told otherwise: they are the harness, and
	// one P keeps their thread wake-ups (costly on a virtual machine) down.
	procs := os.Getenv("QINBA_SFU_BENCH_CLIENT_PROCS")
	if procs == "" {
		procs = "1"
	}
	cmd.Env = append(cmd.Env, "GOMAXPROCS="+procs)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var results []benchResult
	var stopProfile func()
	var window delaySnapshot
	serverDelay := map[string]delaySnapshot{} // per window label
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if _, ok := strings.CutPrefix(strings.TrimSpace(line), "WINDOW start "); ok {
			window = snapshotDelay(t, media.delay)
		}
		if label, ok := strings.CutPrefix(strings.TrimSpace(line), "WINDOW stop "); ok {
			serverDelay[label] = snapshotDelay(t, media.delay).since(window)
		}
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "RESULT "); ok {
			var r benchResult
			if err := json.Unmarshal([]byte(rest), &r); err == nil {
				results = append(results, r)
			}
		}
		if label, ok := strings.CutPrefix(strings.TrimSpace(line), "PROFILE start "); ok {
			stopProfile = startBenchProfile(t, "server-"+label)
		}
		if strings.TrimSpace(line) == "PROFILE stop" && stopProfile != nil {
			stopProfile()
			stopProfile = nil
		}
		t.Log(line)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("clients: %v", err)
	}

	t.Logf("GOMAXPROCS=%d, server and clients on the same machine", runtime.GOMAXPROCS(0))
	t.Logf("%-9s %-8s %-9s %-9s %-9s %-9s %-9s %-9s %-9s %-9s %-9s %-9s %-8s %-8s %-8s %-10s %-10s %s", "consults", "vstreams", "vloss%", "aloss%", "srv p50", "srv p99", "v p50ms", "v p99ms", "a p50ms", "a p99ms", "pair p50", "pair p99", "srvCPU%", "cliCPU%", "fwd pps", "srv us/pkt", "cli us/pkt", "loadavg")
	best := 0
	for _, r := range results {
		name := strconv.Itoa(r.Consults)
		if r.Baseline {
			name = "p2p"
		}
		cliUs := 0.0
		if r.ForwardedPerSec > 0 {
			cliUs = r.ClientsCPUPct / 100 / r.ForwardedPerSec * 1e6
		}
		d := serverDelay[name]
		t.Logf("%-9s %-8d %-9.3f %-9.3f %-9.2f %-9.2f %-9.2f %-9.2f %-9.2f %-9.2f %-9.2f %-9.2f %-8.0f %-8.0f %-8.0f %-10.1f %-10.1f %s", name, r.VideoStreams,
			r.VideoLossPct, r.AudioLossPct, d.quantile(0.50), d.quantile(0.99), r.VideoP50ms, r.VideoP99ms, r.AudioP50ms, r.AudioP99ms, r.PairVideoP50ms, r.PairVideoP99ms,
			r.ServerCPUPct, r.ClientsCPUPct, r.ForwardedPerSec, r.ServerUsPerPkt, cliUs, r.LoadAvg)
		if !r.Baseline && r.VideoLossPct < 1 && r.AudioLossPct < 1 && r.Consults > best {
			best = r.Consults
		}
	}
	t.Logf("largest step with < 1%% loss: %d consults", best)
	t.Logf("srv p50/p99: forwarding delay inside the server (socket receive timestamp to last copy sent, audio and video, 1 packet in %d), ms;", delaySample)
	t.Logf("v/a p50/p99: send time (RTP timestamp) to arrival at the receiving client's socket through the server, ms;")
	t.Logf("pair p50/p99: video delay of a direct client pair in the same window (the client path under the same load);")
	t.Logf("us/pkt: CPU per forwarded packet (server; clients incl. sending); CPU%% is of one core")
}

// TestSFUCapacityClients is the client side of TestSFUCapacity; it runs only
// in the process TestSFUCapacity starts.
func TestSFUCapacityClients(t *testing.T) {
	if os.Getenv("QINBA_SFU_BENCH_CHILD") == "" {
		t.Skip("started by TestSFUCapacity")
	}
	seed, err := hex.DecodeString(os.Getenv("QINBA_SFU_BENCH_KEY"))
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatal("bad QINBA_SFU_BENCH_KEY")
	}
	priv := ed25519.NewKeyFromSeed(seed)
	keys := &memKeys{kid: "bench", priv: priv, pubs: map[string]ed25519.PublicKey{"bench": priv.Public().(ed25519.PublicKey)}}
	tokens, err := NewRoomTokens(RoomTokensConfig{Keys: keys, Issuer: benchIssuer, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{tokens: tokens, wsBase: os.Getenv("QINBA_SFU_BENCH_URL")}
	steps := []int{10, 20, 30, 40, 50, 60}
	if v := os.Getenv("QINBA_SFU_BENCH_STEPS"); v != "" {
		steps = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("QINBA_SFU_BENCH_STEPS: %v", err)
			}
			steps = append(steps, n)
		}
	}
	window := 10 * time.Second
	if v := os.Getenv("QINBA_SFU_BENCH_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		window = time.Duration(n) * time.Second
	}
	const frameBytes = 500_000 / 8 / 30 // 500 kbps at 30 fps

	m := &benchMeter{}    // packets through the server
	pair := &benchMeter{} // packets of the direct pair
	report := func(r benchResult) {
		j, _ := json.Marshal(r)
		fmt.Printf("RESULT %s\n", j)
	}

	tap := newBenchTap()
	api, udp := newBenchAPI(t, tap)
	api2, udp2 := newBenchAPI(t, tap) // the pair's second client needs a socket of its own
	snd := newBenchSender(frameBytes, tap, udp, udp2)
	defer snd.close()
	opts := clientOpts{api: api, noPublish: true, onPacket: m.received, twcc: true, tap: tap}

	// Baseline: two clients connected directly, no server. The pair keeps
	// sending during the steps, so each step also measures the client path
	// alone under the same load.
	{
		popts := opts
		popts.onPacket = pair.received
		a := newTestClient(t, "p2p-a", newBenchPC(t, api), popts)
		z := newTestClient(t, "p2p-b", newBenchPC(t, api2), popts)
		connectDirect(t, a, z)
		snd.add(a, pair.sent)
		snd.add(z, pair.sent)
		time.Sleep(2 * time.Second) // let the pair settle before measuring
		r := measure(window, os.Getppid(), "p2p", pair, 1, nil)
		r.Baseline = true
		r.VideoStreams = 2
		report(r)
	}

	var clients []*testClient
	have := 0
	for _, n := range steps {
		start := time.Now()
		for ; have < n; have++ {
			consult := fmt.Sprintf("bench-%d", have)
			for u := 0; u < 3; u++ {
				c := b.connect(t, consult, fmt.Sprintf("u%d", u), opts)
				snd.add(c, m.sent)
				clients = append(clients, c)
			}
		}
		// Wait until every client gets media from both peers.
		deadline := time.Now().Add(2 * time.Minute)
		for !m.allFlowing(clients) {
			if time.Now().After(deadline) {
				t.Fatalf("step %d: media did not start everywhere", n)
			}
			time.Sleep(100 * time.Millisecond) // a benchmark's ramp-up poll, not synchronisation
		}
		setup := time.Since(start)
		time.Sleep(3 * time.Second) // settle: keyframes, NACK/RTCP, GC
		r := measure(window, os.Getppid(), strconv.Itoa(n), m, 2, pair)
		r.Consults = n
		r.VideoStreams = 6 * n
		r.SetupSeconds = setup.Seconds()
		report(r)
		if r.VideoLossPct > 5 || r.AudioLossPct > 5 {
			break // far past capacity; more consults only take longer
		}
	}
	snd.close()
	for _, c := range clients {
		c.close()
	}
}

// newBenchAPI makes the engine of the synthetic clients. They are the harness,
// not the system under test, so they carry only what makes the server do a
// browser's share of work: the server's codecs, RTCP sender reports on what
// they send, the transport-wide sequence number on what they send (so the
// server's TWCC feedback generator has real work), and on what they receive
// TWCC feedback every 100 ms and a receiver report every second (the server's
// weak-link rule reads them), both built from what the tap saw (twccArrivals,
// benchTap.reports). They run no NACK interceptors: a lost packet stays lost,
// so loss is counted before any retransmission.
func newBenchAPI(t testing.TB, tap *benchTap) (*webrtc.API, *benchUDPConn) {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	reg.Add(sr)
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		t.Fatal(err)
	}
	// TWCC feedback is built from the tap's arrivals, not by pion's interceptor.
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeAudio)
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{slog.New(slog.NewTextHandler(io.Discard, nil))}}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// One socket for all the clients of this engine, read and written in
	// batches (where supported); each client still has its own 5-tuple, since
	// the server gives every connection a socket of its own.
	udp, mux, err := newBenchUDPMux(tap)
	if err != nil {
		t.Fatal(err)
	}
	if mux != nil {
		t.Cleanup(func() { _ = mux.Close() })
		se.SetICEUDPMux(mux)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), udp
}

// benchSender sends the media of every benchmark client from one goroutine:
// per client, Opus-sized audio every 20 ms and a two-packet VP8-like frame
// every 1/30 s (a keyframe when one was asked for), each client at its own
// random phase, from packets built once. One goroutine on one timer, instead
// of two tickers per client, keeps the harness's scheduling cost low; each
// packet is still stamped just before it is written.
type benchSender struct {
	frameBytes int
	tap        *benchTap       // receiver reports
	udp        []*benchUDPConn // shared sockets corked during a pass

	mu   sync.Mutex
	srcs []*benchSource
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type benchSource struct {
	c                                  *testClient
	onSend                             func(kind string, ns int64)
	nextAudio, nextVideo, nextFeedback time.Time
	nextReport                         time.Time
	audio                              rtp.Packet
	key, delta                         []rtp.Packet
	vSeq                               uint16
}

func newBenchSender(frameBytes int, tap *benchTap, udp ...*benchUDPConn) *benchSender {
	s := &benchSender{
		frameBytes: frameBytes, tap: tap, udp: udp,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.run()
	return s
}

// add starts sending c's media; onSend counts each packet.
func (s *benchSender) add(c *testClient, onSend func(kind string, ns int64)) {
	now := time.Now()
	src := &benchSource{
		c:            c,
		onSend:       onSend,
		nextAudio:    now.Add(time.Duration(rand.Int64N(int64(20 * time.Millisecond)))),
		nextVideo:    now.Add(time.Duration(rand.Int64N(int64(time.Second / 30)))),
		nextFeedback: now.Add(time.Duration(rand.Int64N(int64(twccFeedbackInterval)))),
		nextReport:   now.Add(time.Duration(rand.Int64N(int64(reportInterval)))),
		audio:        rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 80)},
	}
	src.audio.Payload[0] = 0xf8 // Opus TOC: CELT fullband 20 ms, one frame
	for _, p := range vp8Frame(s.frameBytes, true) {
		src.key = append(src.key, rtp.Packet{Header: rtp.Header{Version: 2, Marker: p.last}, Payload: p.payload})
	}
	for _, p := range vp8Frame(s.frameBytes, false) {
		src.delta = append(src.delta, rtp.Packet{Header: rtp.Header{Version: 2, Marker: p.last}, Payload: p.payload})
	}
	c.keyframeWanted.Store(true)
	s.mu.Lock()
	s.srcs = append(s.srcs, src)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *benchSender) close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

func (s *benchSender) run() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-t.C:
		}
		s.mu.Lock()
		srcs := s.srcs
		s.mu.Unlock()
		now := time.Now()
		next := now.Add(time.Second)
		for _, c := range s.udp {
			if c != nil {
				c.cork()
			}
		}
		for _, src := range srcs {
			for !src.nextAudio.After(now) {
				src.sendAudio()
				src.nextAudio = src.nextAudio.Add(20 * time.Millisecond)
			}
			for !src.nextVideo.After(now) {
				src.sendVideo()
				src.nextVideo = src.nextVideo.Add(time.Second / 30)
			}
			if tw := src.c.twcc; tw != nil {
				if !src.nextFeedback.After(now) {
					if pkts := tw.feedback(); len(pkts) > 0 {
						_ = src.c.pc.WriteRTCP(pkts)
					}
					src.nextFeedback = now.Add(twccFeedbackInterval)
				}
				next = minTime(next, src.nextFeedback)
			}
			if s.tap != nil {
				if !src.nextReport.After(now) {
					if pkts := s.tap.reports(src.c); len(pkts) > 0 {
						_ = src.c.pc.WriteRTCP(pkts)
					}
					src.nextReport = now.Add(reportInterval)
				}
				next = minTime(next, src.nextReport)
			}
			next = minTime(next, minTime(src.nextAudio, src.nextVideo))
		}
		for _, c := range s.udp {
			if c != nil {
				c.uncork()
			}
		}
		t.Reset(max(time.Until(next), time.Millisecond/2))
	}
}

// reportInterval is how often a benchmark client sends a receiver report
// (pion's default, about what browsers do); TWCC feedback goes every
// twccFeedbackInterval, as the server's does.
const reportInterval = time.Second

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// The RTP timestamps stand for the send time (benchRTPTime), as a live
// encoder's stand for the capture time; the tap reads the delay from them.
func (src *benchSource) sendAudio() {
	p := &src.audio
	p.Timestamp = benchRTPTime(src.c.stamp(p.Payload), 48000)
	src.onSend("audio", benchSendNs(p.Timestamp, 48000)) // what the receiver will read

	_ = src.c.audio.WriteRTP(p)
	p.SequenceNumber++
}

func (src *benchSource) sendVideo() {
	frame := src.delta
	if src.c.keyframeWanted.Swap(false) {
		frame = src.key
	}
	var ts uint32
	for i := range frame {
		p := &frame[i]
		ns := src.c.stamp(p.Payload)
		if i == 0 {
			ts = benchRTPTime(ns, 90000) // one timestamp for a frame's packets
		}
		p.SequenceNumber, p.Timestamp = src.vSeq, ts
		src.onSend("video", benchSendNs(ts, 90000))
		_ = src.c.video.WriteRTP(p)
		src.vSeq++
	}
}

func lossPct(expected, received int64) float64 {
	if expected == 0 {
		return 100
	}
	return math.Max(0, 100*(1-float64(received)/float64(expected)))
}

// newBenchPC makes a client peer connection from the benchmark clients' engine.
func newBenchPC(t *testing.T, api *webrtc.API) *webrtc.PeerConnection {
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// connectDirect does a non-trickle offer/answer between two clients.
func connectDirect(t *testing.T, a, z *testClient) {
	t.Helper()
	offer, err := a.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(a.pc)
	if err := a.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-g
	if err := z.pc.SetRemoteDescription(*a.pc.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := z.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g = webrtc.GatheringCompletePromise(z.pc)
	if err := z.pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-g
	if err := a.pc.SetRemoteDescription(*z.pc.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// benchMeter counts packets and delays inside the current window.
type benchMeter struct {
	from, to             atomic.Int64 // window, unix ns; to == 0 while open
	videoSent, audioSent atomic.Int64
	videoBytes           atomic.Int64
	videoRecv, audioRecv atomic.Int64
	videoHist, audioHist latencyHist
	flowing              atomic.Int64 // packets seen at all, for the ramp-up
}

func (m *benchMeter) inWindow(ns int64) bool {
	from, to := m.from.Load(), m.to.Load()
	return from != 0 && ns >= from && (to == 0 || ns < to)
}

func (m *benchMeter) sent(kind string, ns int64) {
	if !m.inWindow(ns) {
		return
	}
	if kind == "video" {
		m.videoSent.Add(1)
		m.videoBytes.Add(frameBytesPerPacket)
	} else {
		m.audioSent.Add(1)
	}
}

// frameBytesPerPacket approximates the video payload per packet for the bitrate figure.
const frameBytesPerPacket = (500_000/8/30)/2 + 1 + trailerLen

func (m *benchMeter) received(from, kind string, ns int64, now time.Time) {
	m.flowing.Add(1)
	if !m.inWindow(ns) {
		return
	}
	d := now.UnixNano() - ns
	if kind == "video" {
		m.videoRecv.Add(1)
		m.videoHist.add(d)
	} else {
		m.audioRecv.Add(1)
		m.audioHist.add(d)
	}
}

// allFlowing reports whether each client has received both kinds from both peers.
func (m *benchMeter) allFlowing(clients []*testClient) bool {
	for _, c := range clients {
		c.mu.Lock()
		n := 0
		for _, s := range c.recv {
			if !s.ended {
				n++
			}
		}
		c.mu.Unlock()
		if n < 4 {
			return false
		}
	}
	return m.flowing.Load() > 0
}

// measure opens a window on main (and pair, if not nil), waits, closes it,
// lets packets in flight arrive and returns main's counts, with pair's delays.
// fanout is how many receivers each packet main counts as sent has. With
// QINBA_SFU_BENCH_PROFILE_DIR set, both processes write a CPU profile of the
// window (server-<label>.prof, clients-<label>.prof).
func measure(window time.Duration, serverPID int, label string, main *benchMeter, fanout int64, pair *benchMeter) benchResult {
	meters := []*benchMeter{main}
	if pair != nil {
		meters = append(meters, pair)
	}
	for _, m := range meters {
		m.reset()
	}
	cpu0s, cpu0c, t0 := procCPU(serverPID), procCPU(os.Getpid()), time.Now()
	for _, m := range meters {
		m.to.Store(0)
		m.from.Store(t0.UnixNano())
	}
	fmt.Printf("WINDOW start %s\n", label) // the server measures its forwarding delay over the same window
	var stopProfile func()
	if os.Getenv("QINBA_SFU_BENCH_PROFILE_DIR") != "" {
		fmt.Printf("PROFILE start %s\n", label) // the server profiles the same window
		stopProfile = startBenchProfile(nil, "clients-"+label)
	}
	time.Sleep(window)
	t1 := time.Now()
	for _, m := range meters {
		m.to.Store(t1.UnixNano())
	}
	cpu1s, cpu1c := procCPU(serverPID), procCPU(os.Getpid())
	fmt.Printf("WINDOW stop %s\n", label)
	if stopProfile != nil {
		fmt.Println("PROFILE stop")
		stopProfile()
	}
	time.Sleep(time.Second) // packets stamped before t1 still in flight
	secs := t1.Sub(t0).Seconds()
	m := main
	r := benchResult{
		Seconds:       secs,
		VideoSent:     m.videoSent.Load(),
		VideoExpected: fanout * m.videoSent.Load(),
		VideoReceived: m.videoRecv.Load(),
		AudioExpected: fanout * m.audioSent.Load(),
		AudioReceived: m.audioRecv.Load(),
		VideoP50ms:    m.videoHist.quantile(0.50),
		VideoP99ms:    m.videoHist.quantile(0.99),
		AudioP50ms:    m.audioHist.quantile(0.50),
		AudioP99ms:    m.audioHist.quantile(0.99),
		ServerCPUPct:  100 * (cpu1s - cpu0s) / secs,
		ClientsCPUPct: 100 * (cpu1c - cpu0c) / secs,
	}
	r.VideoLossPct = lossPct(r.VideoExpected, r.VideoReceived)
	r.AudioLossPct = lossPct(r.AudioExpected, r.AudioReceived)
	r.ForwardedPerSec = float64(r.VideoReceived+r.AudioReceived) / secs
	if r.ForwardedPerSec > 0 {
		r.ServerUsPerPkt = (cpu1s - cpu0s) / secs / r.ForwardedPerSec * 1e6
	}
	if pair != nil {
		r.PairVideoP50ms = pair.videoHist.quantile(0.50)
		r.PairVideoP99ms = pair.videoHist.quantile(0.99)
		r.PairLossPct = lossPct(pair.videoSent.Load()+pair.audioSent.Load(), pair.videoRecv.Load()+pair.audioRecv.Load())
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if pubs := float64(r.VideoSent) / secs / 60; pubs > 0 { // 60 packets/s per publisher
		r.VideoKbps = float64(m.videoBytes.Load()) * 8 / 1000 / secs / pubs
	}
	return r
}

func (m *benchMeter) reset() {
	for _, c := range []*atomic.Int64{&m.videoSent, &m.audioSent, &m.videoBytes, &m.videoRecv, &m.audioRecv} {
		c.Store(0)
	}
	m.videoHist.reset()
	m.audioHist.reset()
}

// startBenchProfile starts a CPU profile in QINBA_SFU_BENCH_PROFILE_DIR and
// returns the function that ends it.
func startBenchProfile(t *testing.T, name string) func() {
	f, err := os.Create(filepath.Join(os.Getenv("QINBA_SFU_BENCH_PROFILE_DIR"), name+".prof"))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		if t != nil {
			t.Logf("cpu profile: %v", err)
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		if h, err := os.Create(filepath.Join(os.Getenv("QINBA_SFU_BENCH_PROFILE_DIR"), name+".heap")); err == nil {
			_ = pprof.Lookup("heap").WriteTo(h, 0)
			_ = h.Close()
		}
	}
}

// procCPU returns the user+system CPU seconds of a process from /proc.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fields[11], 64)
	k, _ := strconv.ParseFloat(fields[12], 64)
	return (u + k) / 100 // USER_HZ
}

// latencyHist is a lock-free histogram of delays in 20 µs buckets up to 2 s
// (the last bucket holds everything slower).
type latencyHist struct {
	buckets [100001]atomic.Int64
}

const histBucket = 20_000 // ns

func (h *latencyHist) add(ns int64) {
	i := max(ns/histBucket, 0)
	if i >= int64(len(h.buckets)) {
		i = int64(len(h.buckets)) - 1
	}
	h.buckets[i].Add(1)
}

func (h *latencyHist) reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
}

// quantile returns the q-quantile in milliseconds (upper bucket edge).
func (h *latencyHist) quantile(q float64) float64 {
	var total int64
	for i := range h.buckets {
		total += h.buckets[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var acc int64
	for i := range h.buckets {
		if acc += h.buckets[i].Load(); acc >= want {
			return float64((int64(i)+1)*histBucket) / 1e6
		}
	}
	return math.Inf(1)
}
