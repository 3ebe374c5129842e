// Package badrequest builds the INVALID_ARGUMENT answer for bad request
// fields: a message naming every bad field and a google.rpc.BadRequest
// detail listing them.
package badrequest

import (
	"fmt"
	"strings"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/kvgate/kvgate/internal/rpcerr"
)

// Violations collects what is wrong with a request, field by field, so that
// one answer names every bad field. The zero value is empty and ready.
type Violations []*errdetails.BadRequest_FieldViolation

// Add records a violation of field, described by format and args.
func (v *Violations) Add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{
		Field:       field,
		Description: fmt.Sprintf(format, args...),
	})
}

// Check records err against field when it is not nil, described as
// "<field> <err>".
func (v *Violations) Check(field string, err error) {
	if err != nil {
		v.Add(field, "%s %v", field, err)
	}
}

// Err is an INVALID_ARGUMENT error "invalid request: d1; d2" naming every
// violation, with a google.rpc.BadRequest detail, or nil when there are
// none.
func (v Violations) Err() *connect.Error {
	if len(v) == 0 {
		return nil
	}
	descs := make([]string, len(v))
	for i, fv := range v {
		descs[i] = fv.Description
	}
	cerr := connect.NewError(connect.CodeInvalidArgument, "invalid request: "+strings.Join(descs, "; "))
	return rpcerr.WithDetail(cerr, &errdetails.BadRequest{FieldViolations: v})
}

// Field is the error for one bad field: INVALID_ARGUMENT with a
// google.rpc.BadRequest naming it.
func Field(field, description string) *connect.Error {
	var v Violations
	v.Add(field, "%s", description)
	return v.Err()
}
