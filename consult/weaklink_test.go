package consult

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestLinkMonitorRule(t *testing.T) {
	t.Parallel()
	type step struct {
		at     time.Duration // since start
		loss   float64       // fraction lost in a report; ignored when remb > 0
		remb   float64       // bits per second, if a REMB
		paused bool          // expected decision after the step
	}
	cfg := WeakLinkConfig{PauseLoss: 0.10, ResumeLoss: 0.02, PauseAfter: 2 * time.Second, ResumeAfter: 8 * time.Second, MaxResumeAfter: 20 * time.Second, MinVideoKbps: 100}
	s := time.Second
	tests := []struct {
		name  string
		cfg   WeakLinkConfig
		steps []step
	}{
		{"clean link stays on", cfg, []step{{0, 0, 0, false}, {s, 0.01, 0, false}, {10 * s, 0.05, 0, false}}},
		{"a loss spike is not sustained", cfg, []step{
			{0, 0.30, 0, false}, {s, 0, 0, false}, {2 * s, 0, 0, false}, {3 * s, 0, 0, false},
		}},
		{"sustained loss pauses after PauseAfter", cfg, []step{
			{0, 0.30, 0, false}, {s, 0.30, 0, false}, {2 * s, 0.30, 0, true},
		}},
		{"recovery needs the hold-off", cfg, []step{
			{0, 0.5, 0, false}, {2 * s, 0.5, 0, true},
			{3 * s, 0, 0, true}, {4 * s, 0, 0, true}, {5 * s, 0, 0, true}, {6 * s, 0, 0, true}, {7 * s, 0, 0, true},
			{8 * s, 0, 0, true},   // smoothed loss first under 2% at 7 s
			{14 * s, 0, 0, true},  // 7 s of good reports
			{15 * s, 0, 0, false}, // 8 s: resume
		}},
		{"loss during the hold-off restarts it", cfg, []step{
			{0, 0.5, 0, false}, {2 * s, 0.5, 0, true},
			{3 * s, 0, 0, true}, {4 * s, 0, 0, true}, {5 * s, 0, 0, true}, {6 * s, 0, 0, true}, {7 * s, 0, 0, true},
			{12 * s, 0.2, 0, true}, // bad again
			{13 * s, 0, 0, true}, {14 * s, 0, 0, true}, {15 * s, 0, 0, true}, {16 * s, 0, 0, true},
			{20 * s, 0, 0, true}, {24 * s, 0, 0, false},
		}},
		{"flapping doubles the hold-off", cfg, []step{
			{0, 1, 0, false}, {2 * s, 1, 0, true},
			{3 * s, 0, 0, true}, {4 * s, 0, 0, true}, {5 * s, 0, 0, true}, {6 * s, 0, 0, true}, {7 * s, 0, 0, true},
			{8 * s, 0, 0, true},                                                // smoothed loss first under 2%
			{15 * s, 0, 0, true},                                               // 7 s of good reports
			{16 * s, 0, 0, false},                                              // 8 s: resume
			{17 * s, 1, 0, false}, {18 * s, 1, 0, false}, {19 * s, 1, 0, true}, // paused again within a minute
			{20 * s, 0, 0, true}, {21 * s, 0, 0, true}, {22 * s, 0, 0, true}, {23 * s, 0, 0, true}, {24 * s, 0, 0, true},
			{25 * s, 0, 0, true},  // smoothed loss first under 2%
			{33 * s, 0, 0, true},  // 8 s is no longer enough
			{40 * s, 0, 0, true},  // nor 15 s
			{41 * s, 0, 0, false}, // 16 s is
		}},
		{"low REMB pauses at once and recovers", cfg, []step{
			{0, 0, 0, false}, {s, 0, 50_000, true}, {2 * s, 0, 500_000, true}, {3 * s, 0, 0, true}, {9 * s, 0, 0, true}, {10 * s, 0, 0, false},
		}},
		{"disabled never pauses", WeakLinkConfig{Disabled: true}, []step{{0, 1, 0, false}, {10 * s, 1, 0, false}, {20 * s, 0, 1, false}}},
		{"negative PauseAfter pauses at the first bad report", WeakLinkConfig{PauseAfter: -1}, []step{{0, 0.5, 0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newLinkMonitor(tt.cfg)
			start := time.Unix(1000, 0)
			for i, st := range tt.steps {
				var paused bool
				if st.remb > 0 {
					paused, _ = m.observeREMB(start.Add(st.at), st.remb)
				} else {
					paused, _ = m.observeLoss(start.Add(st.at), st.loss)
				}
				if paused != st.paused {
					_, loss := m.state()
					t.Fatalf("step %d (%v, loss %.2f): paused = %v, want %v (smoothed loss %.3f)", i, st.at, st.loss, paused, st.paused, loss)
				}
			}
		})
	}
}

// A subscriber reporting heavy loss stops getting video but keeps audio; video
// comes back, from a keyframe, once its reports are clean for the hold-off.
func TestWeakLinkPausesVideo(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sfu: func(c *SFUConfig) {
		c.WeakLink = WeakLinkConfig{PauseAfter: -1, ResumeAfter: 300 * time.Millisecond}
	}})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{noReports: true}) // bob's reports are ours
	bob.waitPackets("alice", "video", 5)
	bob.waitPackets("alice", "audio", 5)
	ssrc := bob.stats("alice", "video").ssrc

	var lossByte atomic.Uint32
	lossByte.Store(128) // 50 %
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // bob's fake receiver reports, 20 a second
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = bob.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{
				{SSRC: ssrc, FractionLost: uint8(lossByte.Load())},
			}}})
		}
	}()
	defer func() { close(stop); <-done }()

	bob.waitMessage("weak-link pause", 0, func(m serverMsg) bool { return m.Type == "video" && m.Paused && m.Reason == "weak_link" })
	v0 := bob.stats("alice", "video").packets
	bob.waitMore("alice", "audio", 25) // half a second of audio still flows
	if v := bob.stats("alice", "video").packets; v > v0+3 {
		t.Errorf("video kept flowing while paused: %d packets after the pause", v-v0)
	}
	alice.waitMore("bob", "video", 5) // bob's own video to alice is not affected

	n := bob.msgCount()
	k0 := bob.stats("alice", "video").keyframes
	lossByte.Store(0)
	bob.waitMessage("video resumed", n, func(m serverMsg) bool { return m.Type == "video" && !m.Paused })
	bob.waitMore("alice", "video", 5)
	if k := bob.stats("alice", "video").keyframes; k <= k0 {
		t.Error("video did not resume with a keyframe")
	}
}

// max_video_kbps reaches the publisher as a REMB cap; a cap under the video
// floor pauses video for that subscriber instead.
func TestBitrateCap(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{maxKbps: 300})
	bob.waitPackets("alice", "video", 5)
	alice.waitFor("a REMB of at most 300 kbps", func() bool {
		for _, r := range alice.remb {
			if r > 0 && r <= 300_000 {
				return true
			}
		}
		return false
	})
	n := bob.msgCount()
	bob.send(map[string]any{"type": "settings", "max_video_kbps": 50})
	bob.waitMessage("bitrate_cap pause", n, func(m serverMsg) bool { return m.Type == "video" && m.Paused && m.Reason == "bitrate_cap" })
}
