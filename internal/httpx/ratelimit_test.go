package httpx

import (
	"testing"

	"github.com/qinba/qinba/internal/apperr"
)

func TestLimiterBurstThenRefuses(t *testing.T) {
	t.Parallel()
	l := NewLimiter(60, 3)
	for i := range 3 {
		if err := l.Allow("u1"); err != nil {
			t.Fatalf("request %d refused: %v", i, err)
		}
	}
	err := l.Allow("u1")
	if !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("4th request: %v, want rate_limited", err)
	}
	if e, _ := apperr.As(err); e.Details["retry_after_seconds"] != 1 {
		t.Errorf("retry after %v, want 1", e.Details["retry_after_seconds"])
	}
	if err := l.Allow("u2"); err != nil {
		t.Errorf("another key is limited too: %v", err)
	}
}
