package badrequest

import (
	"errors"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

func TestViolations(t *testing.T) {
	t.Parallel()
	var v Violations
	if err := v.Err(); err != nil {
		t.Fatalf("empty Violations: Err = %v; want nil", err)
	}
	v.Check("key", nil)
	if len(v) != 0 {
		t.Fatalf("Check with a nil error recorded %v", v)
	}
	v.Check("key", errors.New("must not be empty"))
	v.Add("limit", "limit is %d; the most is %d", 1001, 1000)
	cerr := v.Err()
	if cerr.Code() != connect.CodeInvalidArgument {
		t.Errorf("code = %v; want InvalidArgument", cerr.Code())
	}
	if want := "invalid request: key must not be empty; limit is 1001; the most is 1000"; cerr.Message() != want {
		t.Errorf("message = %q; want %q", cerr.Message(), want)
	}
	checkFields(t, cerr, []string{"key", "limit"})
}

func TestField(t *testing.T) {
	t.Parallel()
	cerr := Field("value", "value is not valid UTF-8 100%")
	if want := "invalid request: value is not valid UTF-8 100%"; cerr.Message() != want {
		t.Errorf("message = %q; want %q", cerr.Message(), want)
	}
	checkFields(t, cerr, []string{"value"})
}

func checkFields(t *testing.T, cerr *connect.Error, want []string) {
	t.Helper()
	details := cerr.Details()
	if len(details) != 1 {
		t.Fatalf("%d details; want one BadRequest", len(details))
	}
	m, err := connectproto.UnmarshalErrorDetail(details[0])
	if err != nil {
		t.Fatal(err)
	}
	br, ok := m.(*errdetails.BadRequest)
	if !ok {
		t.Fatalf("detail is %T; want *errdetails.BadRequest", m)
	}
	if len(br.GetFieldViolations()) != len(want) {
		t.Fatalf("violations %v; want fields %v", br.GetFieldViolations(), want)
	}
	for i, fv := range br.GetFieldViolations() {
		if fv.GetField() != want[i] {
			t.Errorf("violation %d names %q; want %q", i, fv.GetField(), want[i])
		}
	}
}
