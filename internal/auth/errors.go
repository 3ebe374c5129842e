package auth

import (
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// errorDomain is the google.rpc.ErrorInfo domain of kvgate's errors.
const errorDomain = "kvgate"

// Machine-readable reasons of the refusals, in google.rpc.ErrorInfo.
const (
	reasonNoCredentials    = "CREDENTIALS_MISSING"
	reasonBadCredentials   = "CREDENTIALS_INVALID"
	reasonNoFastlyKey      = "FASTLY_KEY_MISSING"
	reasonRightMissing     = "RIGHT_MISSING"
	reasonStoreOutOfScope  = "STORE_OUT_OF_SCOPE"
	reasonTokenRateLimited = "TOKEN_RATE_LIMITED"
)

// The refusals. Their messages name neither the token nor any store.
func errNoCredentials() *connect.Error {
	return refusal(connect.CodeUnauthenticated, reasonNoCredentials, "credentials required: send Authorization: Bearer <token>")
}

func errBadCredentials() *connect.Error {
	return refusal(connect.CodeUnauthenticated, reasonBadCredentials, "the bearer token is not valid")
}

func errNoFastlyKey() *connect.Error {
	return refusal(connect.CodeUnauthenticated, reasonNoFastlyKey,
		"this kvgate calls Fastly with each caller's own API token: send it in the "+FastlyKeyHeader+" header")
}

// errRightMissing refuses a token without right r; r is zero for a
// procedure no right covers.
func errRightMissing(r right) *connect.Error {
	if r == 0 {
		return refusal(connect.CodePermissionDenied, reasonRightMissing, "no token may call this procedure")
	}
	return refusal(connect.CodePermissionDenied, reasonRightMissing, "the token does not have the "+r.String()+" right")
}

func errStoreOutOfScope() *connect.Error {
	return refusal(connect.CodePermissionDenied, reasonStoreOutOfScope, "the token may not use this store")
}

func errTokenRateLimited(wait time.Duration) *connect.Error {
	cerr := refusal(connect.CodeResourceExhausted, reasonTokenRateLimited, "the token's request rate is exceeded; retry later")
	return withDetail(cerr, &errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
}

// refusal is an error with code and msg and an ErrorInfo saying reason.
func refusal(code connect.Code, reason, msg string) *connect.Error {
	return withDetail(connect.NewError(code, msg), &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
}

// withDetail attaches m to cerr; a message that cannot be packed (none of
// these) is left out rather than failing the answer.
func withDetail(cerr *connect.Error, m proto.Message) *connect.Error {
	if d, err := connectproto.NewErrorDetail(m); err == nil {
		return cerr.WithDetail(d)
	}
	return cerr
}
