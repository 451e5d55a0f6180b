package consult

import (
	"strings"
	"testing"
	"time"
)

// Three participants join one consult; each receives the other two's audio and
// video, including a keyframe (the server asks publishers for one when it starts
// forwarding to a newcomer, and forwards the receivers' own requests).
func TestThreeParticipantsReceiveEachOther(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	users := []string{"alice", "bob", "carol"}
	clients := map[string]*testClient{}
	for _, u := range users {
		clients[u] = b.connect(t, "c1", u, clientOpts{})
	}
	for _, u := range users {
		for _, from := range users {
			if from == u {
				continue
			}
			c := clients[u]
			c.waitPackets(from, "audio", 20)
			c.waitPackets(from, "video", 10)
			c.waitFor("a keyframe from "+from, func() bool { return c.recv[from+"/video"].keyframes > 0 })
		}
	}
	for _, u := range users {
		b.hooks.waitEvent(t, "join c1 "+u)
	}
	if got := len(b.sfu.Participants("c1")); got != 3 {
		t.Errorf("participants = %d, want 3", got)
	}
	// Each publisher gets TWCC feedback on what it sends (its send-side
	// bandwidth estimate runs on it).
	for _, u := range users {
		c := clients[u]
		c.waitFor("TWCC feedback to "+u, func() bool { return c.twccAcks >= 20 })
	}
	// The forwarding delay was measured (one packet in 16 of each of the
	// six streams), from the sockets' receive timestamps: each sample is
	// positive and far below a second on loopback.
	deadline := time.Now().Add(10 * time.Second)
	for snapshotDelay(t, b.sfu.media.delay).count < 12 {
		if time.Now().After(deadline) {
			t.Fatalf("%d forwarding delays measured", snapshotDelay(t, b.sfu.media.delay).count)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := snapshotDelay(t, b.sfu.media.delay); d.quantile(0.5) < 0.01 || d.quantile(1) > 500 {
		t.Errorf("forwarding delay p50 %.3f ms, max %.3f ms", d.quantile(0.5), d.quantile(1))
	}
}

// A participant who leaves is removed for the others (their tracks end after a
// renegotiation, the roster shrinks, OnLeave fires); rejoining brings it back.
func TestLeaveAndRejoin(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	carol := b.connect(t, "c1", "carol", clientOpts{})
	for _, c := range []*testClient{alice, bob} {
		c.waitPackets("carol", "video", 5)
		c.waitPackets("carol", "audio", 5)
	}
	carol.waitPackets("alice", "video", 5)

	carol.leave()
	b.hooks.waitEvent(t, "leave c1 carol left")
	for _, c := range []*testClient{alice, bob} {
		c.waitFor("carol's tracks to end", func() bool {
			a, v := c.recv["carol/audio"], c.recv["carol/video"]
			return a != nil && a.ended && v != nil && v.ended
		})
		c.waitFor("roster without carol", func() bool {
			for i := len(c.msgs) - 1; i >= 0; i-- {
				if m := c.msgs[i]; m.Type == "participants" {
					return len(m.Participants) == 2 && !hasUser(m.Participants, "carol")
				}
			}
			return false
		})
	}
	carol.close()

	carol2 := b.connect(t, "c1", "carol", clientOpts{})
	for _, c := range []*testClient{alice, bob} {
		c.waitFor("carol's new tracks", func() bool {
			a, v := c.recv["carol/audio"], c.recv["carol/video"]
			return a != nil && !a.ended && a.packets >= 5 && v != nil && !v.ended && v.packets >= 5
		})
	}
	for _, from := range []string{"alice", "bob"} {
		carol2.waitPackets(from, "audio", 5)
		carol2.waitPackets(from, "video", 5)
	}
	b.hooks.waitEvent(t, "join c1 carol")
	if got := len(b.sfu.Participants("c1")); got != 3 {
		t.Errorf("participants = %d, want 3", got)
	}

	// When everyone has left the room is gone.
	for _, c := range []*testClient{alice, bob, carol2} {
		c.leave()
	}
	b.hooks.waitEvent(t, "empty c1")
	if b.sfu.room("c1") != nil {
		t.Error("room still exists")
	}
}

func hasUser(ps []ParticipantInfo, user string) bool {
	for _, p := range ps {
		if p.UserID == user {
			return true
		}
	}
	return false
}

// An audio-only participant receives no video, and its video (sent anyway
// here) is not forwarded; turning audio-only off brings video back.
func TestAudioOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{audioOnly: true})
	bob.waitMessage("video paused for audio_only", 0, func(m serverMsg) bool {
		return m.Type == "video" && m.Paused && m.Reason == "audio_only"
	})
	// Plenty of audio flows both ways while no video does.
	bob.waitPackets("alice", "audio", 50)
	alice.waitPackets("bob", "audio", 50)
	if n := bob.stats("alice", "video").packets; n != 0 {
		t.Errorf("audio-only bob received %d video packets", n)
	}
	if n := alice.stats("bob", "video").packets; n != 0 {
		t.Errorf("alice received %d video packets from audio-only bob", n)
	}
	alice.waitFor("roster marks bob audio-only", func() bool {
		for i := len(alice.msgs) - 1; i >= 0; i-- {
			if m := alice.msgs[i]; m.Type == "participants" {
				for _, p := range m.Participants {
					if p.UserID == "bob" {
						return p.AudioOnly
					}
				}
				return false
			}
		}
		return false
	})

	n := bob.msgCount()
	bob.send(map[string]any{"type": "settings", "audio_only": false})
	bob.waitMessage("video resumed", n, func(m serverMsg) bool { return m.Type == "video" && !m.Paused })
	bob.waitPackets("alice", "video", 5)
	alice.waitPackets("bob", "video", 5)
	if !bob.stats("alice", "video").firstKeyframe {
		t.Error("video after audio-only did not start with a keyframe")
	}
}

// A participant whose signalling connection drops (a network change) resumes
// its session: the server restarts ICE, media keeps flowing both ways and the
// consult does not see a leave.
func TestResumeRestartsICE(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	alice.waitPackets("bob", "video", 5)
	bob.waitPackets("alice", "video", 5)

	alice.waitFor("an offer", func() bool { return len(alice.offers) > 0 })
	alice.mu.Lock()
	firstUfrag := iceUfrag(alice.offers[0])
	offers := len(alice.offers)
	alice.mu.Unlock()

	alice.dropSignal()
	bob.waitFor("alice shown disconnected", func() bool { return rosterConnected(bob.msgs, "alice") == 0 })

	alice.opts.resume = true
	n := alice.msgCount()
	alice.dial(b, "c1", b.token(t, "c1", "alice"))
	w := alice.waitMessage("welcome", n, func(m serverMsg) bool { return m.Type == "welcome" })
	if !w.Resumed {
		t.Error("welcome does not say resumed")
	}
	alice.waitFor("an ICE restart offer", func() bool { return len(alice.offers) > offers })
	alice.mu.Lock()
	restartUfrag := iceUfrag(alice.offers[len(alice.offers)-1])
	alice.mu.Unlock()
	if restartUfrag == "" || restartUfrag == firstUfrag {
		t.Errorf("ice-ufrag %q after resume, %q before: ICE did not restart", restartUfrag, firstUfrag)
	}
	alice.waitMore("bob", "audio", 25)
	bob.waitMore("alice", "audio", 25)
	alice.waitMore("bob", "video", 10)
	bob.waitMore("alice", "video", 10)
	bob.waitFor("alice shown connected", func() bool { return rosterConnected(bob.msgs, "alice") == 1 })
	for _, ev := range b.hooks.snapshot() {
		if ev == "leave c1 alice timeout" || ev == "empty c1" {
			t.Errorf("unexpected hook %q", ev)
		}
	}
}

// rosterConnected reports from the last roster whether user is connected (1),
// disconnected (0) or absent (-1).
func rosterConnected(msgs []serverMsg, user string) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Type != "participants" {
			continue
		}
		for _, p := range msgs[i].Participants {
			if p.UserID == user {
				if p.Connected {
					return 1
				}
				return 0
			}
		}
		return -1
	}
	return -1
}

func iceUfrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// A participant that drops and does not come back within the grace is removed.
func TestReconnectGraceExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sfu: func(c *SFUConfig) { c.ReconnectGrace = 300 * time.Millisecond }})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	bob.waitPackets("alice", "audio", 5)
	alice.dropSignal()
	b.hooks.waitEvent(t, "leave c1 alice timeout")
	bob.waitFor("alice's tracks to end", func() bool {
		a := bob.recv["alice/audio"]
		return a != nil && a.ended
	})
}

// Joining again without resume replaces the old session.
func TestJoinAgainReplacesSession(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	// Alone in the room: the room survives the replacement.
	solo := b.connect(t, "c0", "alice", clientOpts{noPublish: true})
	solo.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
	solo2 := b.connect(t, "c0", "alice", clientOpts{noPublish: true})
	solo2.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
	b.hooks.waitEvent(t, "leave c0 alice replaced")
	if b.hooks.has("empty c0") || len(b.sfu.Participants("c0")) != 1 {
		t.Errorf("replacing the only participant ended the room: %q", b.hooks.snapshot())
	}

	old := b.connect(t, "c1", "alice", clientOpts{noPublish: true})
	old.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
	bob := b.connect(t, "c1", "bob", clientOpts{})
	old.waitPackets("bob", "audio", 5)
	fresh := b.connect(t, "c1", "alice", clientOpts{})
	old.waitMessage("replaced", 0, func(m serverMsg) bool { return m.Type == "error" && m.Code == "replaced" })
	b.hooks.waitEvent(t, "leave c1 alice replaced")
	fresh.waitPackets("bob", "video", 5)
	bob.waitPackets("alice", "video", 5)
	if got := len(b.sfu.Participants("c1")); got != 2 {
		t.Errorf("participants = %d, want 2", got)
	}
}

// CloseRoom disconnects everyone and ends the room.
func TestCloseRoom(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	alice.waitMessage("welcome", 0, func(m serverMsg) bool { return m.Type == "welcome" })
	if err := b.sfu.CloseRoom("c1"); err != nil {
		t.Fatal(err)
	}
	b.hooks.waitEvent(t, "leave c1 alice closed")
	b.hooks.waitEvent(t, "empty c1")
	if err := b.sfu.CloseRoom("c1"); err != ErrNoRoom {
		t.Errorf("second CloseRoom = %v, want ErrNoRoom", err)
	}
}
