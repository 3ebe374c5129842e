package upstream

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateBudget tracks Fastly's write budget from the Fastly-RateLimit-*
// headers of write responses, so that once it is spent writes fail fast
// (a 429 not sent) instead of spending the caller's deadline on requests
// Fastly will refuse. Reads are not rate-limited and never checked.
type rateBudget struct {
	mu        sync.Mutex
	remaining int64 // -1 when unknown
	reset     time.Time
}

func newRateBudget() *rateBudget { return &rateBudget{remaining: -1} }

func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// update records the budget a write's response reports.
func (b *rateBudget) update(method string, h http.Header) {
	if isRead(method) {
		return
	}
	rem := h.Get("Fastly-RateLimit-Remaining")
	if rem == "" {
		return
	}
	n, err := strconv.ParseInt(rem, 10, 64)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remaining = n
	if epoch, err := strconv.ParseInt(h.Get("Fastly-RateLimit-Reset"), 10, 64); err == nil {
		b.reset = time.Unix(epoch, 0)
	}
}

// wait is how long a write stays refused: the time to the reset while the
// budget is spent, else zero. Reads are never refused.
func (b *rateBudget) wait(method string, now time.Time) time.Duration {
	if isRead(method) {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.remaining != 0 || !now.Before(b.reset) {
		return 0
	}
	return b.reset.Sub(now)
}

// check refuses a write while the budget is spent and not yet reset.
func (b *rateBudget) check(op Op, method string, now time.Time) error {
	if isRead(method) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.remaining != 0 {
		return nil
	}
	if !now.Before(b.reset) {
		b.remaining = -1 // a new window: unknown until the next answer
		return nil
	}
	return &StatusError{
		Op: op, Status: http.StatusTooManyRequests, RetryAfter: b.reset.Sub(now), NotSent: true,
		Body: "Fastly's write budget is spent until its reset; not sent",
	}
}
