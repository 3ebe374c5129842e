package badrequest

import (
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

func TestField(t *testing.T) {
	t.Parallel()
	err := Field("items[2].key", "items[2].key must be valid UTF-8")
	if err.Code() != connect.CodeInvalidArgument {
		t.Errorf("code %v, want %v", err.Code(), connect.CodeInvalidArgument)
	}
	if want := "invalid request: items[2].key must be valid UTF-8"; err.Message() != want {
		t.Errorf("message %q, want %q", err.Message(), want)
	}
	details := err.Details()
	if len(details) != 1 {
		t.Fatalf("%d details, want 1", len(details))
	}
	got, derr := connectproto.UnmarshalErrorDetail(details[0])
	if derr != nil {
		t.Fatal(derr)
	}
	want := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "items[2].key", Description: "items[2].key must be valid UTF-8"},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("detail %v, want %v", got, want)
	}
}
