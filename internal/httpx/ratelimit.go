package httpx

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/qinba/qinba/internal/apperr"
)

// Limiter is a set of token buckets, one per key (a user, an address):
// each key may make Burst requests at once and then PerMinute a minute.
// Idle buckets are forgotten, so memory stays bounded by active keys.
type Limiter struct {
	PerMinute float64
	Burst     int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewLimiter returns a limiter of perMinute requests a minute per key,
// with bursts of burst.
func NewLimiter(perMinute float64, burst int) *Limiter {
	return &Limiter{PerMinute: perMinute, Burst: burst, buckets: map[string]*bucket{}}
}

// Allow takes a token from key's bucket. When none is left it returns a
// RateLimited error saying how long to wait.
func (l *Limiter) Allow(key string) error {
	now := time.Now()
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.PerMinute/60), l.Burst)}
		l.buckets[key] = b
	}
	b.seen = now
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	r := b.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > 0 {
		r.CancelAt(now)
	}
	l.mu.Unlock()
	if delay <= 0 {
		return nil
	}
	secs := int(math.Ceil(delay.Seconds()))
	return &apperr.Error{Code: apperr.RateLimited, Message: "too many requests: try again in " + strconv.Itoa(secs) + " s",
		Details: map[string]any{"retry_after_seconds": secs}}
}

// sweep forgets buckets idle long enough to be full again.
func (l *Limiter) sweep(now time.Time) {
	full := time.Duration(float64(l.Burst)/(l.PerMinute/60)*float64(time.Second)) + time.Minute
	for k, b := range l.buckets {
		if now.Sub(b.seen) > full {
			delete(l.buckets, k)
		}
	}
	l.swept = now
}
