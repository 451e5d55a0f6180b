package consult

import (
	"sync"
	"time"
)

// WeakLinkConfig sets the rule by which the server stops forwarding video to a
// participant whose downlink cannot carry it, before their audio suffers.
//
// The rule, per subscriber: every RTCP reception report block the subscriber
// sends about a track we forward to it updates a smoothed loss
// (loss = (loss + fraction lost) / 2). Video to the subscriber is paused when
// the smoothed loss stays above PauseLoss for PauseAfter, or at once when the
// subscriber's REMB estimate falls below MinVideoKbps. While paused only audio
// flows; video resumes (from a fresh keyframe) when the smoothed loss stays below
// ResumeLoss, with no low REMB, for the hold-off. The hold-off starts at
// ResumeAfter and doubles (up to MaxResumeAfter) each time video is paused again
// within a minute of the previous pause, so a link on the edge does not flap.
type WeakLinkConfig struct {
	// Disabled turns the rule off: video is never paused for loss.
	Disabled bool
	// PauseLoss is the smoothed loss above which video is paused (0.10 if zero).
	PauseLoss float64
	// ResumeLoss is the smoothed loss below which video may resume (0.02 if zero).
	ResumeLoss float64
	// PauseAfter is how long loss must stay above PauseLoss (2 s if zero; negative
	// means at the first bad report).
	PauseAfter time.Duration
	// ResumeAfter is the initial hold-off before resuming (8 s if zero).
	ResumeAfter time.Duration
	// MaxResumeAfter caps the doubling hold-off (64 s if zero).
	MaxResumeAfter time.Duration
	// MinVideoKbps is the video floor: a REMB estimate or a participant's own
	// max_video_kbps below it pauses video instead of starving it (100 if zero).
	MinVideoKbps int
}

func (c WeakLinkConfig) withDefaults() WeakLinkConfig {
	if c.PauseLoss <= 0 {
		c.PauseLoss = 0.10
	}
	if c.ResumeLoss <= 0 {
		c.ResumeLoss = 0.02
	}
	switch {
	case c.PauseAfter == 0:
		c.PauseAfter = 2 * time.Second
	case c.PauseAfter < 0:
		c.PauseAfter = 0
	}
	if c.ResumeAfter <= 0 {
		c.ResumeAfter = 8 * time.Second
	}
	if c.MaxResumeAfter <= 0 {
		c.MaxResumeAfter = 64 * time.Second
	}
	if c.MaxResumeAfter < c.ResumeAfter {
		c.MaxResumeAfter = c.ResumeAfter
	}
	if c.MinVideoKbps <= 0 {
		c.MinVideoKbps = 100
	}
	return c
}

// flapWindow is how soon after a pause another pause doubles the hold-off.
const flapWindow = time.Minute

// linkMonitor applies the WeakLinkConfig rule to one subscriber. It is safe for
// concurrent use (reports arrive on one goroutine per forwarded track).
type linkMonitor struct {
	cfg WeakLinkConfig

	mu        sync.Mutex
	loss      float64
	seen      bool
	rembLow   bool
	paused    bool
	badSince  time.Time
	goodSince time.Time
	holdoff   time.Duration
	lastPause time.Time
}

func newLinkMonitor(cfg WeakLinkConfig) *linkMonitor {
	cfg = cfg.withDefaults()
	return &linkMonitor{cfg: cfg, holdoff: cfg.ResumeAfter}
}

// observeLoss records one report's fraction lost (0..1) and returns whether
// video is paused and whether that just changed.
func (m *linkMonitor) observeLoss(now time.Time, fraction float64) (paused, changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen {
		m.loss = (m.loss + fraction) / 2
	} else {
		m.loss, m.seen = fraction, true
	}
	return m.evaluate(now)
}

// observeREMB records a receiver estimate in bits per second.
func (m *linkMonitor) observeREMB(now time.Time, bps float64) (paused, changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rembLow = bps < float64(m.cfg.MinVideoKbps)*1000
	return m.evaluate(now)
}

// state returns the current decision and smoothed loss.
func (m *linkMonitor) state() (paused bool, loss float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused, m.loss
}

func (m *linkMonitor) evaluate(now time.Time) (bool, bool) {
	if m.cfg.Disabled {
		return false, false
	}
	if !m.paused {
		if m.loss > m.cfg.PauseLoss {
			if m.badSince.IsZero() {
				m.badSince = now
			}
		} else {
			m.badSince = time.Time{}
		}
		if m.rembLow || (!m.badSince.IsZero() && now.Sub(m.badSince) >= m.cfg.PauseAfter) {
			m.paused = true
			m.goodSince = time.Time{}
			if !m.lastPause.IsZero() && now.Sub(m.lastPause) < flapWindow {
				m.holdoff = min(2*m.holdoff, m.cfg.MaxResumeAfter)
			} else {
				m.holdoff = m.cfg.ResumeAfter
			}
			m.lastPause = now
			return true, true
		}
		return false, false
	}
	if m.loss < m.cfg.ResumeLoss && !m.rembLow {
		if m.goodSince.IsZero() {
			m.goodSince = now
		}
		if now.Sub(m.goodSince) >= m.holdoff {
			m.paused = false
			m.badSince = time.Time{}
			return false, true
		}
	} else {
		m.goodSince = time.Time{}
	}
	return true, false
}
