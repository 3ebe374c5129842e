package rpcerr

import (
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

func TestWithInfo(t *testing.T) {
	t.Parallel()
	cerr := WithInfo(connect.NewError(connect.CodeNotFound, "item not found"), "NOT_FOUND", map[string]string{"http_status": "404"})
	details := cerr.Details()
	if len(details) != 1 {
		t.Fatalf("%d details, want 1", len(details))
	}
	got, err := connectproto.UnmarshalErrorDetail(details[0])
	if err != nil {
		t.Fatal(err)
	}
	want := &errdetails.ErrorInfo{Reason: "NOT_FOUND", Domain: "kvgate", Metadata: map[string]string{"http_status": "404"}}
	if !proto.Equal(got, want) {
		t.Errorf("detail %v, want %v", got, want)
	}
	if cerr.Code() != connect.CodeNotFound || cerr.Message() != "item not found" {
		t.Errorf("error changed: %v", cerr)
	}
}
