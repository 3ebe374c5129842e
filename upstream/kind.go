package upstream

import (
	"errors"
	"net/http"
	"strconv"
)

// Kind classifies a failed call to the KV REST API by what it means for the
// caller, so that callers never read HTTP statuses themselves.
type Kind int

const (
	// KindNone is no failure: a nil error.
	KindNone Kind = iota
	// KindOther is a failure that did not come from the upstream, such as
	// an ended context that no upstream error wraps.
	KindOther

	// KindNotFound is a 404: the item or the store does not exist.
	KindNotFound
	// KindKeyExists is a 412 answering a write that required the key to
	// be absent.
	KindKeyExists
	// KindGenerationMismatch is a 412 answering a request conditional on
	// the item's generation.
	KindGenerationMismatch
	// KindPreconditionFailed is any other 412.
	KindPreconditionFailed
	// KindBadRequest is a 400; Fastly's message stays in StatusError.Body.
	KindBadRequest
	// KindUnauthorized is a 401: the API token was not accepted.
	KindUnauthorized
	// KindForbidden is a 403: the API token may not do this.
	KindForbidden
	// KindTooLarge is a 413: the value is larger than Fastly accepts.
	KindTooLarge
	// KindRateLimited is a 429; StatusError.RetryAfter says when to retry,
	// when known.
	KindRateLimited
	// KindUnavailable is a 5xx.
	KindUnavailable
	// KindUnexpectedStatus is any other status the call did not expect.
	KindUnexpectedStatus

	// KindUnreachable is a [TransportError]: the upstream could not be
	// reached, or its answer could not be read.
	KindUnreachable
	// KindBadResponse is a [ResponseError]: an answer the client could not
	// understand.
	KindBadResponse
	// KindOutcomeUnknown is an [UnknownOutcomeError]: a write that may or
	// may not have been applied.
	KindOutcomeUnknown
)

var kindNames = [...]string{
	KindNone:               "none",
	KindOther:              "other",
	KindNotFound:           "not found",
	KindKeyExists:          "key exists",
	KindGenerationMismatch: "generation mismatch",
	KindPreconditionFailed: "precondition failed",
	KindBadRequest:         "bad request",
	KindUnauthorized:       "unauthorized",
	KindForbidden:          "forbidden",
	KindTooLarge:           "too large",
	KindRateLimited:        "rate limited",
	KindUnavailable:        "unavailable",
	KindUnexpectedStatus:   "unexpected status",
	KindUnreachable:        "unreachable",
	KindBadResponse:        "bad response",
	KindOutcomeUnknown:     "outcome unknown",
}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind " + strconv.Itoa(int(k))
}

// ItemLevel reports kinds that concern one item of a call rather than the
// call as a whole: in a batch write, the other items can still succeed.
func (k Kind) ItemLevel() bool {
	switch k {
	case KindBadRequest, KindKeyExists, KindGenerationMismatch, KindPreconditionFailed, KindTooLarge:
		return true
	}
	return false
}

// Kind classifies the status, reading Precondition to tell the 412s apart.
func (e *StatusError) Kind() Kind { return statusKind(e.Status, e.Precondition) }

// Kind classifies a batch line's failure; a code that is not a status is
// the line's fault, a bad request.
func (e BatchLineError) Kind() Kind {
	status, err := strconv.Atoi(e.Code)
	if err != nil {
		return KindBadRequest
	}
	return statusKind(status, PreconditionNone)
}

func statusKind(status int, pc Precondition) Kind {
	switch {
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusPreconditionFailed && pc == PreconditionAbsent:
		return KindKeyExists
	case status == http.StatusPreconditionFailed && pc == PreconditionGeneration:
		return KindGenerationMismatch
	case status == http.StatusPreconditionFailed:
		return KindPreconditionFailed
	case status == http.StatusBadRequest:
		return KindBadRequest
	case status == http.StatusUnauthorized:
		return KindUnauthorized
	case status == http.StatusForbidden:
		return KindForbidden
	case status == http.StatusRequestEntityTooLarge:
		return KindTooLarge
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status >= 500:
		return KindUnavailable
	}
	return KindUnexpectedStatus
}

// KindOf classifies err. An [UnknownOutcomeError] is checked first, since
// it wraps the status or transport failure behind it.
func KindOf(err error) Kind {
	if err == nil {
		return KindNone
	}
	if _, ok := errors.AsType[*UnknownOutcomeError](err); ok {
		return KindOutcomeUnknown
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se.Kind()
	}
	if _, ok := errors.AsType[*TransportError](err); ok {
		return KindUnreachable
	}
	if _, ok := errors.AsType[*ResponseError](err); ok {
		return KindBadResponse
	}
	return KindOther
}
