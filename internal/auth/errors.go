package auth

import (
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kvgate/kvgate/internal/rpcerr"
)

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
	if r.count() > 1 {
		return refusal(connect.CodePermissionDenied, reasonRightMissing, "the token does not have the "+r.String()+" rights")
	}
	return refusal(connect.CodePermissionDenied, reasonRightMissing, "the token does not have the "+r.String()+" right")
}

func errStoreOutOfScope() *connect.Error {
	return refusal(connect.CodePermissionDenied, reasonStoreOutOfScope, "the token may not use this store")
}

func errTokenRateLimited(wait time.Duration) *connect.Error {
	cerr := refusal(connect.CodeResourceExhausted, reasonTokenRateLimited, "the token's request rate is exceeded; retry later")
	return rpcerr.WithDetail(cerr, &errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
}

// refusal is an error with code and msg and an ErrorInfo saying reason.
func refusal(code connect.Code, reason, msg string) *connect.Error {
	return rpcerr.WithInfo(connect.NewError(code, msg), reason, nil)
}
