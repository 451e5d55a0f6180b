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
// (packets stamped inside the window that reached each subscriber, against
// twice the packets sent), and the delay from the sender's stamp to the
// receiver's read (p50/p99). A direct pion-to-pion pair measured first gives
// the baseline delay of the client path alone.

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
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
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

	cmd := exec.Command(os.Args[0], "-test.run=^TestSFUCapacityClients$", "-test.v", "-test.count=1", "-test.timeout=60m")
	cmd.Env = append(os.Environ(),
		"QINBA_SFU_BENCH_CHILD=1",
		"QINBA_SFU_BENCH_URL=ws"+strings.TrimPrefix(srv.URL, "http"),
		"QINBA_SFU_BENCH_KEY="+hex.EncodeToString(priv.Seed()),
	)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var results []benchResult
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "RESULT "); ok {
			var r benchResult
			if err := json.Unmarshal([]byte(rest), &r); err == nil {
				results = append(results, r)
			}
		}
		t.Log(line)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("clients: %v", err)
	}

	t.Logf("GOMAXPROCS=%d, server and clients on the same machine", runtime.GOMAXPROCS(0))
	t.Logf("%-9s %-8s %-9s %-9s %-9s %-9s %-9s %-9s %-8s %-8s %-8s %-9s %s", "consults", "vstreams", "vloss%", "aloss%", "v p50ms", "v p99ms", "a p50ms", "a p99ms", "srvCPU%", "cliCPU%", "fwd pps", "srv us/pkt", "loadavg")
	best := 0
	for _, r := range results {
		name := strconv.Itoa(r.Consults)
		if r.Baseline {
			name = "p2p"
		}
		t.Logf("%-9s %-8d %-9.3f %-9.3f %-9.2f %-9.2f %-9.2f %-9.2f %-8.0f %-8.0f %-8.0f %-9.1f %s", name, r.VideoStreams,
			r.VideoLossPct, r.AudioLossPct, r.VideoP50ms, r.VideoP99ms, r.AudioP50ms, r.AudioP99ms, r.ServerCPUPct, r.ClientsCPUPct, r.ForwardedPerSec, r.ServerUsPerPkt, r.LoadAvg)
		if !r.Baseline && r.VideoLossPct < 1 && r.AudioLossPct < 1 && r.Consults > best {
			best = r.Consults
		}
	}
	t.Logf("largest step with < 1%% loss: %d consults", best)
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

	m := &benchMeter{}
	report := func(r benchResult) {
		j, _ := json.Marshal(r)
		fmt.Printf("RESULT %s\n", j)
	}

	// Baseline: two clients connected directly, no server.
	{
		a := newTestClient(t, "p2p-a", newBenchPC(t), clientOpts{frameBytes: frameBytes, onPacket: m.received, onSend: m.sent})
		z := newTestClient(t, "p2p-b", newBenchPC(t), clientOpts{frameBytes: frameBytes, onPacket: m.received, onSend: m.sent})
		connectDirect(t, a, z)
		a.go_(a.sendMedia)
		z.go_(z.sendMedia)
		time.Sleep(2 * time.Second) // let the pair settle before measuring
		r := m.measure(window, 1, os.Getppid())
		r.Baseline = true
		r.VideoStreams = 2
		report(r)
		a.close()
		z.close()
	}

	var clients []*testClient
	have := 0
	for _, n := range steps {
		start := time.Now()
		for ; have < n; have++ {
			consult := fmt.Sprintf("bench-%d", have)
			for u := 0; u < 3; u++ {
				c := b.connect(t, consult, fmt.Sprintf("u%d", u), clientOpts{frameBytes: frameBytes, onPacket: m.received, onSend: m.sent})
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
		r := m.measure(window, 2, os.Getppid())
		r.Consults = n
		r.VideoStreams = 6 * n
		r.SetupSeconds = setup.Seconds()
		report(r)
		if r.VideoLossPct > 5 || r.AudioLossPct > 5 {
			break // far past capacity; more consults only take longer
		}
	}
	for _, c := range clients {
		c.close()
	}
}

func lossPct(expected, received int64) float64 {
	if expected == 0 {
		return 100
	}
	return math.Max(0, 100*(1-float64(received)/float64(expected)))
}

// newBenchPC makes a client peer connection with the server's engine settings.
func newBenchPC(t *testing.T) *webrtc.PeerConnection {
	pc, err := newClientAPI(t, false).NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
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

// measure opens a window, waits, closes it, lets packets in flight arrive and
// returns the counts. fanout is how many receivers each sent packet has.
func (m *benchMeter) measure(window time.Duration, fanout int64, serverPID int) benchResult {
	for _, c := range []*atomic.Int64{&m.videoSent, &m.audioSent, &m.videoBytes, &m.videoRecv, &m.audioRecv} {
		c.Store(0)
	}
	m.videoHist.reset()
	m.audioHist.reset()
	cpu0s, cpu0c, t0 := procCPU(serverPID), procCPU(os.Getpid()), time.Now()
	m.to.Store(0)
	m.from.Store(t0.UnixNano())
	time.Sleep(window)
	t1 := time.Now()
	m.to.Store(t1.UnixNano())
	cpu1s, cpu1c := procCPU(serverPID), procCPU(os.Getpid())
	time.Sleep(time.Second) // packets stamped before t1 still in flight
	secs := t1.Sub(t0).Seconds()
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
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if pubs := float64(r.VideoSent) / secs / 60; pubs > 0 { // 60 packets/s per publisher
		r.VideoKbps = float64(m.videoBytes.Load()) * 8 / 1000 / secs / pubs
	}
	return r
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
