package upstream

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Observer is told about every attempt of every call the [Client] makes,
// retries included, so that metrics and traces can be kept of the upstream
// without this package knowing how. Its methods must be safe for
// concurrent use.
type Observer interface {
	// StartAttempt is called before an attempt is sent. The context it
	// returns is the attempt's (a tracing span's, say); end is called once
	// with the attempt's outcome, after its answer has been read.
	StartAttempt(ctx context.Context, a Attempt) (_ context.Context, end func(AttemptOutcome))
}

// Attempt is one try of a call.
type Attempt struct {
	Op     Op
	Method string
	// Number counts the call's attempts from 1; above 1 it is a retry.
	Number int
}

// AttemptOutcome is how an attempt ended.
type AttemptOutcome struct {
	// Status is the HTTP status the upstream answered; zero when there was
	// no answer (a transport failure) or the attempt was not sent.
	Status int
	// Kind classifies a failed attempt; [KindNone] on success.
	Kind Kind
	// NotSent is set when the client refused the attempt itself because
	// Fastly's write budget was spent.
	NotSent bool
	// Duration is the time from sending to the end of reading the answer.
	Duration time.Duration
}

// requestIDKey is the context key of [WithRequestID].
type requestIDKey struct{}

// RequestIDKey returns the context key [WithRequestID] sets, for a server
// that attaches request values to its requests' contexts its own way; the
// value must be a string.
func RequestIDKey() any { return requestIDKey{} }

// RequestIDHeader is the header that carries a request id to the upstream.
const RequestIDHeader = "X-Request-Id"

// WithRequestID returns ctx carrying id, which the client sends as
// X-Request-Id on every request made with that context, so that the
// upstream's logs can be matched with the RPC that caused them.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WriteBudgetRemaining reports the write budget left: Fastly's, as its
// last write response said (Fastly-RateLimit-Remaining), or the writes
// left in the rolling hour of [ClientConfig.WriteBudget], whichever is
// lower. ok is false while neither is known: no WriteBudget, and no write
// answer has said (or a spent budget's window has passed since).
func (c *Client) WriteBudgetRemaining() (remaining int64, ok bool) {
	return c.budget.remainingAt(time.Now())
}

// observedAttempt is [Client.attempt] told to the observer, when there is one.
func (c *Client) observedAttempt(ctx context.Context, cl *call, number int) error {
	if c.observer == nil {
		return c.attempt(ctx, cl, number)
	}
	ctx, end := c.observer.StartAttempt(ctx, Attempt{Op: cl.op, Method: cl.method, Number: number})
	cl.status = 0
	start := time.Now()
	err := c.attempt(ctx, cl, number)
	out := AttemptOutcome{Status: cl.status, Kind: KindOf(err), Duration: time.Since(start)}
	if se, ok := errors.AsType[*StatusError](err); ok && se.NotSent {
		out.NotSent, out.Status = true, 0
	}
	end(out)
	return err
}

// setRequestID copies the request id of ctx onto req.
func setRequestID(ctx context.Context, req *http.Request) {
	if id := RequestID(ctx); id != "" {
		req.Header.Set(RequestIDHeader, id)
	}
}
