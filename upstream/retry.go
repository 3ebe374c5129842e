package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
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
