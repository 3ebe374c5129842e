package service

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kvgate/kvgate/upstream"
)

// errorDomain is the google.rpc.ErrorInfo domain of kvgate's errors.
const errorDomain = "kvgate"

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
)

// notFoundSubject says what a 404 means for a call: an item for item
// calls, the store for listings.
type notFoundSubject string

const (
	itemSubject  notFoundSubject = "item"
	storeSubject notFoundSubject = "store"
)

// fromUpstream turns an upstream failure into a deliberate Connect error.
// The public message says what happened; the cause (which may echo
// Fastly's body) stays on the server for the log.
func fromUpstream(err error, subject notFoundSubject) *connect.Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, "deadline exceeded before Fastly answered").WithCause(err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, "request canceled").WithCause(err)
	}
	if _, ok := errors.AsType[*upstream.UnknownOutcomeError](err); ok {
		// Checked first: it wraps the status or transport failure.
		return withInfo(connect.NewError(connect.CodeUnknown,
			"Fastly may or may not have applied the write; read the item before retrying"), reasonOutcomeUnknown, 0).WithCause(err)
	}
	if se, ok := errors.AsType[*upstream.StatusError](err); ok {
		return fromStatus(se, subject).WithCause(err)
	}
	if _, ok := errors.AsType[*upstream.TransportError](err); ok {
		return withInfo(connect.NewError(connect.CodeUnavailable, "could not reach Fastly"), reasonUnreachable, 0).WithCause(err)
	}
	if _, ok := errors.AsType[*upstream.ResponseError](err); ok {
		return withInfo(connect.NewError(connect.CodeUnavailable, "Fastly sent a response kvgate could not read"), reasonBadResponse, 0).WithCause(err)
	}
	return connect.NewError(connect.CodeInternal, "internal error").WithCause(err)
}

func fromStatus(se *upstream.StatusError, subject notFoundSubject) *connect.Error {
	var (
		code   connect.Code
		msg    string
		reason string
		extra  []proto.Message
	)
	switch s := se.Status; {
	case s == http.StatusNotFound:
		code, msg, reason = connect.CodeNotFound, string(subject)+" not found", reasonNotFound
	case s == http.StatusPreconditionFailed && se.Precondition == upstream.PreconditionAbsent:
		code, msg, reason = connect.CodeAlreadyExists, "an item with this key already exists", reasonKeyExists
	case s == http.StatusPreconditionFailed && se.Precondition == upstream.PreconditionGeneration:
		code, msg, reason = connect.CodeAborted,
			"the item's generation does not match if_generation_match; read the item again and retry",
			reasonGenerationMismatch
	case s == http.StatusPreconditionFailed:
		code, msg, reason = connect.CodeFailedPrecondition, "Fastly refused the request: precondition failed", reasonPrecondition
	case s == http.StatusBadRequest:
		code, msg, reason = connect.CodeInvalidArgument, "Fastly rejected the request as invalid", reasonBadRequest
	case s == http.StatusUnauthorized:
		code, msg, reason = connect.CodeUnauthenticated, "Fastly did not accept the API token", reasonUnauthenticated
	case s == http.StatusForbidden:
		code, msg, reason = connect.CodePermissionDenied, "the API token is not allowed to do this", reasonPermissionDenied
	case s == http.StatusRequestEntityTooLarge:
		code, msg, reason = connect.CodeInvalidArgument, "the value is larger than Fastly accepts", reasonValueTooLarge
		extra = append(extra, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: "value", Description: "value is larger than Fastly accepts for this store",
		}}})
	case s == http.StatusTooManyRequests:
		code, msg, reason = connect.CodeResourceExhausted, "Fastly's rate limit was reached; retry later", reasonRateLimited
	case s >= 500:
		code, msg, reason = connect.CodeUnavailable, "Fastly is unavailable; retry later", reasonUnavailable
	default:
		code, msg, reason = connect.CodeUnknown, "Fastly answered with an unexpected status", reasonUnexpectedStatus
	}
	if se.RetryAfter > 0 && (code == connect.CodeResourceExhausted || code == connect.CodeUnavailable) {
		extra = append(extra, &errdetails.RetryInfo{RetryDelay: durationpb.New(se.RetryAfter)})
	}
	cerr := withInfo(connect.NewError(code, msg), reason, se.Status)
	for _, m := range extra {
		if d, err := connectproto.NewErrorDetail(m); err == nil {
			cerr = cerr.WithDetail(d)
		}
	}
	return cerr
}

// withInfo attaches a google.rpc.ErrorInfo with reason and, when known, the
// upstream HTTP status.
func withInfo(cerr *connect.Error, reason string, status int) *connect.Error {
	info := &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}
	if status != 0 {
		info.Metadata = map[string]string{"http_status": strconv.Itoa(status)}
	}
	if d, err := connectproto.NewErrorDetail(info); err == nil {
		cerr = cerr.WithDetail(d)
	}
	return cerr
}
