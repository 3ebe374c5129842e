package service

import (
	"fmt"
	"strings"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// maxStoreIDBytes bounds store ids. Fastly's are 22 lowercase letters and
// digits; the bound only keeps nonsense out of URLs and logs.
const maxStoreIDBytes = 128

// violations collects what is wrong with a request, field by field, so that
// one answer names every bad field.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{
		Field:       field,
		Description: fmt.Sprintf(format, args...),
	})
}

// check records err against field when it is not nil.
func (v *violations) check(field string, err error) {
	if err != nil {
		v.add(field, "%s %v", field, err)
	}
}

// err is an InvalidArgument error naming every violation, with a
// google.rpc.BadRequest detail, or nil when there are none.
func (v violations) err() *connect.Error {
	if len(v) == 0 {
		return nil
	}
	descs := make([]string, len(v))
	for i, fv := range v {
		descs[i] = fv.Description
	}
	cerr := connect.NewError(connect.CodeInvalidArgument, "invalid request: "+strings.Join(descs, "; "))
	if d, err := connectproto.NewErrorDetail(&errdetails.BadRequest{FieldViolations: v}); err == nil {
		cerr = cerr.WithDetail(d)
	}
	return cerr
}

func (v *violations) checkStoreID(id string) {
	switch {
	case id == "":
		v.add("store_id", "store_id must not be empty")
	case len(id) > maxStoreIDBytes:
		v.add("store_id", "store_id is %d bytes; the limit is %d", len(id), maxStoreIDBytes)
	case strings.IndexFunc(id, func(r rune) bool { return !isStoreIDRune(r) }) >= 0:
		v.add("store_id", "store_id may hold only ASCII letters, digits, '-' and '_'")
	}
}

func isStoreIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// checkEnum rejects enum numbers the schema does not define: proto3 enums
// are open, so they arrive intact in binary requests.
func (v *violations) checkEnum(field string, value protoreflect.Enum) {
	if value.Descriptor().Values().ByNumber(value.Number()) == nil {
		v.add(field, "%s has unknown value %d", field, value.Number())
	}
}

// checkTTL accepts unset, or whole seconds greater than zero.
func (v *violations) checkTTL(field string, d *durationpb.Duration) {
	switch {
	case d == nil:
	case d.CheckValid() != nil:
		v.add(field, "%s is not a valid duration", field)
	case d.GetNanos() != 0:
		v.add(field, "%s must be whole seconds", field)
	case d.GetSeconds() <= 0:
		v.add(field, "%s must be greater than zero", field)
	}
}

// checkPageSize accepts 0 (Fastly's page of 1000) up to 1000.
func (v *violations) checkPageSize(field string, n uint32) {
	if n > MaxListLimit {
		v.add(field, "%s is %d; the most is %d", field, n, MaxListLimit)
	}
}

func (v *violations) checkValue(value []byte, limit int64) {
	if int64(len(value)) > limit {
		v.add("value", "value is %d bytes; the limit is %d", len(value), limit)
	}
}

// InvalidField is the error for one bad request field found outside the
// handlers (while decoding, say): INVALID_ARGUMENT with a
// google.rpc.BadRequest naming it, as the handlers answer.
func InvalidField(field, description string) *connect.Error {
	var v violations
	v.add(field, "%s", description)
	return v.err()
}
