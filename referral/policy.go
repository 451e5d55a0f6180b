package referral

import (
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"
)

// Clock tells the time. The server uses SystemClock; tests use a FakeClock
// to move deadlines without waiting.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// FakeClock is a settable clock for tests. Its zero value is not usable;
// build it with NewFakeClock.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a clock stopped at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Policy holds the referral rules that a county may tune.
type Policy struct {
	// AcceptWithin is how long the receiving facility has to accept a
	// referral of each urgency before it escalates.
	AcceptWithin map[Urgency]time.Duration
	// EscalateEvery is how often the escalator scans for overdue referrals.
	EscalateEvery time.Duration
	// Heartbeat is the interval of the stream's keep-alive comments.
	Heartbeat time.Duration
	// MaxAttachment is the largest attachment in bytes; MaxAttachments the
	// most files one referral may carry.
	MaxAttachment  int
	MaxAttachments int
}

// DefaultPolicy is emergency 30 min, urgent 4 h, routine 48 h; a scan every
// 30 s; a heartbeat every 15 s; 5 MB per attachment, 20 per referral.
func DefaultPolicy() Policy {
	return Policy{
		AcceptWithin: map[Urgency]time.Duration{
			Emergency: 30 * time.Minute,
			Urgent:    4 * time.Hour,
			Routine:   48 * time.Hour,
		},
		EscalateEvery:  30 * time.Second,
		Heartbeat:      15 * time.Second,
		MaxAttachment:  5 << 20,
		MaxAttachments: 20,
	}
}

// Validate checks that every duration and limit is positive.
func (p Policy) Validate() error {
	var errs []error
	for _, u := range Urgencies {
		if p.AcceptWithin[u] <= 0 {
			errs = append(errs, fmt.Errorf("referral deadline for %s must be positive", u))
		}
	}
	if p.EscalateEvery <= 0 {
		errs = append(errs, errors.New("referral escalation interval must be positive"))
	}
	if p.Heartbeat <= 0 {
		errs = append(errs, errors.New("referral stream heartbeat must be positive"))
	}
	if p.MaxAttachment <= 0 || p.MaxAttachment > 5<<20 {
		errs = append(errs, errors.New("referral attachment limit must be 1 byte to 5 MB (the table's limit)"))
	}
	if p.MaxAttachments <= 0 {
		errs = append(errs, errors.New("referral attachment count must be positive"))
	}
	return errors.Join(errs...)
}

// RegisterFlags declares the policy's flags on fs with p's values as
// defaults, so a command (`qinba serve`) can expose them.
func (p *Policy) RegisterFlags(fs *flag.FlagSet) {
	if p.AcceptWithin == nil {
		*p = DefaultPolicy()
	}
	for _, u := range Urgencies {
		fs.Var(durationIn(p.AcceptWithin, u), "referral-deadline-"+string(u),
			fmt.Sprintf("how long a referral of urgency %s may wait for acceptance before it escalates", u))
	}
	fs.DurationVar(&p.EscalateEvery, "referral-escalate-every", p.EscalateEvery, "how often the server scans for overdue referrals")
	fs.DurationVar(&p.Heartbeat, "referral-stream-heartbeat", p.Heartbeat, "keep-alive interval of the referral stream")
}

type mapDuration struct {
	m map[Urgency]time.Duration
	u Urgency
}

func durationIn(m map[Urgency]time.Duration, u Urgency) flag.Value { return mapDuration{m, u} }

func (d mapDuration) String() string {
	if d.m == nil {
		return ""
	}
	return d.m[d.u].String()
}

func (d mapDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return errors.New("must be positive")
	}
	d.m[d.u] = v
	return nil
}
