// Package badrequest builds the gateway's answer to a request with an
// invalid field: INVALID_ARGUMENT carrying a google.rpc.BadRequest that
// names the field, so callers in any language can tell which one to fix.
package badrequest

import (
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Field is the error for one invalid request field: INVALID_ARGUMENT with
// the message "invalid request: <description>" and a google.rpc.BadRequest
// detail holding one violation for field.
func Field(field, description string) *connect.Error {
	err := connect.NewError(connect.CodeInvalidArgument, "invalid request: "+description)
	detail, derr := connectproto.NewErrorDetail(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}},
	})
	if derr == nil {
		err = err.WithDetail(detail)
	}
	return err
}
