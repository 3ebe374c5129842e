// Package rpcerr holds what every deliberate kvgate error is built from:
// the google.rpc.ErrorInfo domain, and attaching details to a
// *connect.Error without ever failing the answer.
package rpcerr

import (
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

// Domain is the google.rpc.ErrorInfo domain of kvgate's errors.
const Domain = "kvgate"

// WithDetail returns cerr with m attached. A message that cannot be
// packed (none of kvgate's) is left out rather than failing the answer.
func WithDetail(cerr *connect.Error, m proto.Message) *connect.Error {
	if d, err := connectproto.NewErrorDetail(m); err == nil {
		return cerr.WithDetail(d)
	}
	return cerr
}

// WithInfo returns cerr with a google.rpc.ErrorInfo saying reason, in
// kvgate's domain, with metadata when there is some.
func WithInfo(cerr *connect.Error, reason string, metadata map[string]string) *connect.Error {
	return WithDetail(cerr, &errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: metadata})
}
