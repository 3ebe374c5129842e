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
// again. A write that must not be applied twice is retried only when it
// certainly was not applied; see [retryIfNotApplied].
type RetryPolicy struct {
	// MaxAttempts counts the first try; 1 turns retries off. Zero or less
	// takes [DefaultRetryPolicy]'s.
	MaxAttempts int
	// BaseDelay is the first backoff; it doubles per attempt, with jitter.
	// Zero or less takes [DefaultRetryPolicy]'s.
	BaseDelay time.Duration
	// MaxDelay caps one backoff, and the longest Retry-After the client
	// waits out itself; a longer one is handed to the caller. Zero or less
	// takes [DefaultRetryPolicy]'s.
	MaxDelay time.Duration
}

// DefaultRetryPolicy is the policy a [ClientConfig] without one gets: 4
// attempts, backoff from 100ms, and at most 5s of waiting between two.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}
}

// withDefaults fills the fields left zero (or negative) from
// [DefaultRetryPolicy].
func (p RetryPolicy) withDefaults() RetryPolicy {
	def := DefaultRetryPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = def.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = def.MaxDelay
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

// retryRule says when a call that failed may be sent again.
type retryRule int

const (
	// retryAlways calls have the same effect sent twice: reads, overwrites,
	// plain deletes and batch upserts. Any failure the policy deems
	// passing is retried, whether or not the upstream applied the call.
	retryAlways retryRule = iota
	// retryIfNotApplied calls must not be applied twice (append, prepend)
	// or would misreport if they were (add, compare-and-set): they are
	// retried only when the upstream certainly did not apply them, a 429
	// or a connection that was never made. Any other failure leaves their
	// outcome unknown.
	retryIfNotApplied
)

// retryableStatus reports statuses worth another try of a [retryAlways]
// call: rate limiting and server-side failures that tend to pass.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// neverConnected reports a transport failure that happened before the
// request could reach the upstream: the connection was never made.
func neverConnected(err error) bool {
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
func (p RetryPolicy) decide(ctx context.Context, rule retryRule, err error, attempt int) (time.Duration, bool) {
	if attempt >= p.MaxAttempts {
		return 0, false
	}
	wait := p.backoff(attempt)
	var se *StatusError
	var te *TransportError
	switch {
	case errors.As(err, &se):
		if se.NotSent || !retryableStatus(se.Status) || (rule == retryIfNotApplied && se.Status != http.StatusTooManyRequests) {
			return 0, false
		}
		if se.RetryAfter > p.MaxDelay {
			return 0, false
		}
		wait = max(wait, se.RetryAfter)
	case errors.As(err, &te):
		if rule == retryIfNotApplied && !neverConnected(te.Err) {
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
	return errors.As(err, &te) && neverConnected(te.Err)
}

// unknownIfUnsafe turns the final failure of a [retryIfNotApplied] call
// into an [UnknownOutcomeError] when the upstream may have applied it.
func unknownIfUnsafe(op Op, rule retryRule, err error) error {
	if rule != retryIfNotApplied {
		return err
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status >= 500 {
		return &UnknownOutcomeError{Op: op, Err: err}
	}
	var te *TransportError
	if errors.As(err, &te) && !neverConnected(te.Err) {
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
