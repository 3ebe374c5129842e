package service

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/internal/rpcerr"
	"github.com/kvgate/kvgate/upstream"
)

// Machine-readable reasons carried in google.rpc.ErrorInfo.
const (
	reasonNotFound           = "NOT_FOUND"
	reasonKeyExists          = "KEY_EXISTS"
	reasonGenerationMismatch = "GENERATION_MISMATCH"
	reasonPrecondition       = "PRECONDITION_FAILED"
	reasonBadRequest         = "UPSTREAM_BAD_REQUEST"
	reasonUnauthenticated    = "UPSTREAM_UNAUTHENTICATED"
	reasonPermissionDenied   = "UPSTREAM_PERMISSION_DENIED"
	reasonValueTooLarge      = "VALUE_TOO_LARGE"
	reasonRateLimited        = "UPSTREAM_RATE_LIMITED"
	reasonUnavailable        = "UPSTREAM_UNAVAILABLE"
	reasonUnexpectedStatus   = "UPSTREAM_UNEXPECTED_STATUS"
	reasonUnreachable        = "UPSTREAM_UNREACHABLE"
	reasonBadResponse        = "UPSTREAM_BAD_RESPONSE"
	reasonOutcomeUnknown     = "OUTCOME_UNKNOWN"
	reasonWriteBudget        = "WRITE_BUDGET_EXHAUSTED"
)

// notFoundSubject says what a 404 means for a call: an item for item
// calls, the store for listings.
type notFoundSubject string

const (
	itemSubject  notFoundSubject = "item"
	storeSubject notFoundSubject = "store"
)

// wireError is what callers see for one kind of upstream failure.
type wireError struct {
	code connect.Code
	// msg is the public message; for a kind with bySubject it follows the
	// subject ("item not found").
	msg       string
	bySubject bool
	reason    string
	// detail, when set, is attached after the ErrorInfo.
	detail proto.Message
}

// wireErrors maps every kind of upstream failure to its Connect error.
var wireErrors = map[upstream.Kind]wireError{
	upstream.KindNotFound: {code: connect.CodeNotFound, msg: "not found", bySubject: true, reason: reasonNotFound},
	upstream.KindKeyExists: {code: connect.CodeAlreadyExists,
		msg: "an item with this key already exists", reason: reasonKeyExists},
	upstream.KindGenerationMismatch: {code: connect.CodeAborted,
		msg:    "the item's generation does not match if_generation_match; read the item again and retry",
		reason: reasonGenerationMismatch},
	upstream.KindPreconditionFailed: {code: connect.CodeFailedPrecondition,
		msg: "Fastly refused the request: precondition failed", reason: reasonPrecondition},
	upstream.KindBadRequest: {code: connect.CodeInvalidArgument,
		msg: "Fastly rejected the request as invalid", reason: reasonBadRequest},
	upstream.KindUnauthorized: {code: connect.CodeUnauthenticated,
		msg: "Fastly did not accept the API token", reason: reasonUnauthenticated},
	upstream.KindForbidden: {code: connect.CodePermissionDenied,
		msg: "the API token is not allowed to do this", reason: reasonPermissionDenied},
	upstream.KindTooLarge: {code: connect.CodeInvalidArgument,
		msg: "the value is larger than Fastly accepts", reason: reasonValueTooLarge,
		detail: &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: "value", Description: "value is larger than Fastly accepts for this store",
		}}}},
	upstream.KindRateLimited: {code: connect.CodeResourceExhausted,
		msg: "Fastly's rate limit was reached; retry later", reason: reasonRateLimited},
	upstream.KindUnavailable: {code: connect.CodeUnavailable,
		msg: "Fastly is unavailable; retry later", reason: reasonUnavailable},
	upstream.KindUnexpectedStatus: {code: connect.CodeUnknown,
		msg: "Fastly answered with an unexpected status", reason: reasonUnexpectedStatus},
	upstream.KindUnreachable: {code: connect.CodeUnavailable,
		msg: "could not reach Fastly", reason: reasonUnreachable},
	upstream.KindBadResponse: {code: connect.CodeUnavailable,
		msg: "Fastly sent a response kvgate could not read", reason: reasonBadResponse},
	upstream.KindOutcomeUnknown: {code: connect.CodeUnknown,
		msg: "Fastly may or may not have applied the write; read the item before retrying", reason: reasonOutcomeUnknown},
}

// ownBudgetError is what callers see for a write kvgate refused itself,
// unsent, because its own hourly write budget (-write-budget) is spent:
// not Fastly's doing, so not worded as Fastly's rate limit.
var ownBudgetError = wireError{code: connect.CodeResourceExhausted,
	msg: "kvgate's hourly write budget is spent; retry later", reason: reasonWriteBudget}

// wording names the upstream in the messages callers see: "Fastly", or
// "the local store" when kvgate runs its embedded store, so that a failure
// of the store on the caller's own machine is not blamed on Fastly. The
// zero value says Fastly.
type wording struct{ upstream string }

// say puts the upstream's name into a message written about Fastly.
func (w wording) say(msg string) string {
	if w.upstream == "" || w.upstream == "Fastly" {
		return msg
	}
	return strings.ReplaceAll(msg, "Fastly", w.upstream)
}

// fromUpstream turns an upstream failure into a deliberate Connect error.
// The public message says what happened; the cause (which may echo
// Fastly's body) stays on the server for the log.
func (w wording) fromUpstream(err error, subject notFoundSubject) *connect.Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, w.say("deadline exceeded before Fastly answered")).WithCause(err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, "request canceled").WithCause(err)
	case errors.Is(err, membudget.ErrExhausted):
		return budgetError(err)
	}
	kind := upstream.KindOf(err)
	we, ok := wireErrors[kind]
	if !ok {
		return connect.NewError(connect.CodeInternal, "internal error").WithCause(err)
	}
	var (
		status     int
		retryAfter time.Duration
	)
	// An unknown outcome names no status: whatever failed, the write may
	// have been applied.
	if se, ok := errors.AsType[*upstream.StatusError](err); ok && kind != upstream.KindOutcomeUnknown {
		status, retryAfter = se.Status, se.RetryAfter
		if se.OwnBudget {
			we, status = ownBudgetError, 0 // nothing was sent: no upstream status
		}
	}
	return we.build(w, subject, status, retryAfter).WithCause(err)
}

// build makes the error with its details: an ErrorInfo carrying the
// upstream status when there was one, the kind's own detail, and a
// RetryInfo when Fastly said when to retry something worth retrying.
func (w wireError) build(words wording, subject notFoundSubject, status int, retryAfter time.Duration) *connect.Error {
	msg := words.say(w.msg)
	if w.bySubject {
		msg = string(subject) + " " + msg
	}
	cerr := withInfo(connect.NewError(w.code, msg), w.reason, status)
	if w.detail != nil {
		cerr = rpcerr.WithDetail(cerr, words.detail(w.detail))
	}
	if retryAfter > 0 && (w.code == connect.CodeResourceExhausted || w.code == connect.CodeUnavailable) {
		cerr = rpcerr.WithDetail(cerr, &errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	}
	return cerr
}

// detail returns d with the upstream's name in its field descriptions.
func (w wording) detail(d proto.Message) proto.Message {
	br, ok := d.(*errdetails.BadRequest)
	if !ok || w.say("Fastly") == "Fastly" {
		return d
	}
	named := proto.Clone(br).(*errdetails.BadRequest)
	for _, v := range named.GetFieldViolations() {
		v.Description = w.say(v.Description)
	}
	return named
}

// withInfo attaches a google.rpc.ErrorInfo with reason and, when known, the
// upstream HTTP status.
func withInfo(cerr *connect.Error, reason string, status int) *connect.Error {
	var metadata map[string]string
	if status != 0 {
		metadata = map[string]string{"http_status": strconv.Itoa(status)}
	}
	return rpcerr.WithInfo(cerr, reason, metadata)
}

// batchFailure reports one item of a batch write that failed with cerr.
func batchFailure(index uint64, key string, cerr *connect.Error) *kvv1.BatchFailure {
	return &kvv1.BatchFailure{Index: index, Key: key, Code: cerr.Code().String(), Reason: cerr.Message()}
}
