package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RetryPolicy says how often and how patiently a failed call is tried
// again. Only calls that are safe to replay are retried; see replay.
type RetryPolicy struct {
	// MaxAttempts counts the first try; 1 turns retries off. 4 when zero.
	MaxAttempts int
	// BaseDelay is the first backoff; it doubles per attempt, with jitter.
	// 100ms when zero.
	BaseDelay time.Duration
	// MaxDelay caps one backoff, and the longest Retry-After the client
	// waits out itself; a longer one is handed to the caller. 5s when zero.
	MaxDelay time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 100 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 5 * time.Second
	}
	return p
}

// backoff is the wait before attempt+1: exponential from BaseDelay, capped
// at MaxDelay, with "equal jitter" (half fixed, half random) so that many
// clients failing together do not retry together.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.MaxDelay
	if shift := max(attempt-1, 0); shift < 63 && p.BaseDelay <= p.MaxDelay>>shift {
		d = p.BaseDelay << shift // cannot overflow: at most MaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// replay says when a call that failed may be sent again.
type replay int

const (
	// replaySafe calls have the same effect sent twice: reads, overwrites,
	// plain deletes and batch upserts.
	replaySafe replay = iota
	// replayUnsent calls must not be applied twice (append, prepend) or
	// would misreport if they were (add, compare-and-set): they are retried
	// only when the upstream certainly did not apply them, a 429 or a
	// connection that was never made. Any other failure leaves their
	// outcome unknown.
	replayUnsent
)

// retryableStatus reports statuses worth another try of a replay-safe
// call: rate limiting and server-side failures that tend to pass.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// notSent reports a transport failure that happened before the request
// could reach the upstream: the connection was never made.
func notSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// UnknownOutcomeError is a write that must not be replayed and failed in a
// way that leaves open whether the upstream applied it: the connection
// broke after the request was sent, or the upstream answered with a server
// error. The caller has to read the item to find out.
type UnknownOutcomeError struct {
	Op  Op
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return "fastly " + string(e.Op) + ": outcome unknown: " + e.Err.Error()
}

func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// decide reports whether a failed attempt is tried again, and after how
// long. It gives up when the attempts are spent, the wait is longer than
// MaxDelay (the caller should see Retry-After), or the wait would end past
// the caller's deadline.
func (p RetryPolicy) decide(ctx context.Context, rp replay, err error, attempt int) (time.Duration, bool) {
	if attempt >= p.MaxAttempts {
		return 0, false
	}
	wait := p.backoff(attempt)
	var se *StatusError
	var te *TransportError
	switch {
	case errors.As(err, &se):
		if se.NotSent || !retryableStatus(se.Status) || (rp == replayUnsent && se.Status != http.StatusTooManyRequests) {
			return 0, false
		}
		if se.RetryAfter > p.MaxDelay {
			return 0, false
		}
		wait = max(wait, se.RetryAfter)
	case errors.As(err, &te):
		if rp == replayUnsent && !notSent(te.Err) {
			return 0, false
		}
	default:
		return 0, false
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
		return 0, false
	}
	return wait, true
}

// certainlyNotApplied reports a failed attempt that cannot have changed
// anything upstream: a 429 (or one kvgate answered itself), or a
// connection that was never made.
func certainlyNotApplied(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.NotSent || se.Status == http.StatusTooManyRequests
	}
	var te *TransportError
	return errors.As(err, &te) && notSent(te.Err)
}

// unknownIfUnsafe turns the final failure of a call that must not be
// replayed into an UnknownOutcomeError when the upstream may have applied
// it.
func unknownIfUnsafe(op Op, rp replay, err error) error {
	if rp != replayUnsent {
		return err
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status >= 500 {
		return &UnknownOutcomeError{Op: op, Err: err}
	}
	var te *TransportError
	if errors.As(err, &te) && !notSent(te.Err) {
		return &UnknownOutcomeError{Op: op, Err: err}
	}
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

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
