package upstream

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Op names the REST call that failed.
type Op string

// The REST calls the client makes.
const (
	OpGet    Op = "get item"
	OpHead   Op = "head item"
	OpPut    Op = "put item"
	OpDelete Op = "delete item"
	OpList   Op = "list keys"
	OpBatch  Op = "batch put"
)

// Precondition says which condition a request carried, so that a 412
// answer can be told apart: Fastly answers 412 with an empty body both when
// add=true finds the key taken and when if-generation-match does not match.
type Precondition int

const (
	// PreconditionNone means the request carried no condition.
	PreconditionNone Precondition = iota
	// PreconditionAbsent means the request asked that the key not exist
	// (add=true).
	PreconditionAbsent
	// PreconditionGeneration means the request carried if-generation-match.
	PreconditionGeneration
)

// StatusError is a non-success HTTP status from the KV REST API.
type StatusError struct {
	Op     Op
	Status int
	// Precondition is what the request was conditional on; it decides what
	// a 412 means.
	Precondition Precondition
	// RetryAfter is how long the upstream asked the caller to wait, from
	// Retry-After or Fastly-RateLimit-Reset; zero when it did not say.
	RetryAfter time.Duration
	// Body is the start of the response body, for logs only: it may echo
	// the request.
	Body string
	// Attempts is how many times the call was sent.
	Attempts int
	// NotSent marks a 429 that kvgate answered itself, without sending,
	// because Fastly's write budget was known to be spent.
	NotSent bool
	// OwnBudget marks a NotSent 429 refused by kvgate's own hourly write
	// budget ([ClientConfig.WriteBudget]) rather than by Fastly's.
	OwnBudget bool
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("fastly %s: %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// TransportError is a failure to reach the upstream or to read its answer:
// the request may or may not have been applied.
type TransportError struct {
	Op  Op
	Err error
}

func (e *TransportError) Error() string { return fmt.Sprintf("fastly %s: %v", e.Op, e.Err) }
func (e *TransportError) Unwrap() error { return e.Err }

// ResponseError is a response the client could not understand, such as a
// GET without a valid Generation header or a list body that is not JSON.
type ResponseError struct {
	Op     Op
	Reason string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("fastly %s: unreadable response: %s", e.Op, e.Reason)
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

// retryAfter reads how long the upstream asked the caller to wait: the
// standard Retry-After header (seconds or an HTTP date), else Fastly's
// Fastly-RateLimit-Reset (UTC epoch seconds).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t.Sub(now)
		}
	}
	if v := h.Get("Fastly-RateLimit-Reset"); v != "" && !budgetLeft(h) {
		if epoch, err := strconv.ParseInt(v, 10, 64); err == nil {
			if t := time.Unix(epoch, 0); t.After(now) {
				return t.Sub(now)
			}
		}
	}
	return 0
}

// budgetLeft reports a response that says writes remain in the rate-limit
// window: its Fastly-RateLimit-Reset is then the window's end, not a wait.
func budgetLeft(h http.Header) bool {
	n, err := strconv.ParseInt(h.Get("Fastly-RateLimit-Remaining"), 10, 64)
	return err == nil && n > 0
}
