package auth

import (
	"math"
	"sync"
	"time"
)

// limiter is a set of token buckets keyed by a string (an IP, a username),
// kept in memory. Each bucket holds up to burst tokens and regains one
// every `every`. It forgets full buckets when it grows large.
type limiter struct {
	burst float64
	every time.Duration
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets is when the limiter starts forgetting idle buckets.
const maxBuckets = 10000

func newLimiter(burst int, every time.Duration, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), every: every, now: now, m: map[string]*bucket{}}
}

// take spends a token of key's bucket. When none is left it returns false
// and how long until one is.
func (l *limiter) take(key string) (bool, time.Duration) {
	if l == nil || l.burst <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= maxBuckets {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.m[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) * float64(l.every))
	return false, wait
}

// pruneLocked drops buckets that have refilled completely.
func (l *limiter) pruneLocked(now time.Time) {
	for k, b := range l.m {
		if b.tokens+float64(now.Sub(b.at))/float64(l.every) >= l.burst {
			delete(l.m, k)
		}
	}
}

func (l *limiter) prune() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(l.now())
}
