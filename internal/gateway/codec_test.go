package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

func TestUnmarshalRead(t *testing.T) {
	t.Parallel()
	decodeErr := errors.New("decode failed")
	readErr := errors.New("read failed")
	for _, tc := range []struct {
		name       string
		src        io.Reader
		msg        any
		decodeErr  error
		field      string // what locate finds
		wantLocate bool
		want       func(error) bool
	}{
		{"decoded", bytes.NewReader([]byte("x")), &kvv1.GetItemRequest{}, nil, "key", false,
			func(err error) bool { return err == nil }},
		{"failed, no bad string", bytes.NewReader([]byte("x")), &kvv1.GetItemRequest{}, decodeErr, "", true,
			func(err error) bool { return err == decodeErr }},
		{"failed, bad string", bytes.NewReader([]byte("x")), &kvv1.GetItemRequest{}, decodeErr, "key", true,
			func(err error) bool {
				bad, ok := errors.AsType[*invalidUTF8Error](err)
				return ok && bad.field == "key"
			}},
		{"read error", iotest.ErrReader(readErr), &kvv1.GetItemRequest{}, nil, "", false,
			func(err error) bool { return err == readErr }},
		{"not a proto message", bytes.NewReader(nil), struct{}{}, nil, "", false,
			func(err error) bool { return errors.Is(err, connectproto.ErrNotProtoMessage) }},
	} {
		located := false
		decode := func(data []byte, _ proto.Message) error {
			if string(data) != "x" {
				t.Errorf("%s: decoded %q, want %q", tc.name, data, "x")
			}
			return tc.decodeErr
		}
		locate := func(data []byte, md protoreflect.MessageDescriptor, prefix string) string {
			located = true
			if string(data) != "x" || md.FullName() != "fastly.kv.v1.GetItemRequest" || prefix != "" {
				t.Errorf("%s: located in %q, %s, %q", tc.name, data, md.FullName(), prefix)
			}
			return tc.field
		}
		err := unmarshalRead(tc.src, tc.msg, decode, locate)
		if !tc.want(err) {
			t.Errorf("%s: got error %v", tc.name, err)
		}
		if located != tc.wantLocate {
			t.Errorf("%s: searched for a bad string: %t, want %t", tc.name, located, tc.wantLocate)
		}
	}
}

// TestCodecs decodes through the gateway's codecs: a bad string is named,
// and any other failure is the decoder's own error.
func TestCodecs(t *testing.T) {
	t.Parallel()
	type codec interface {
		UnmarshalRead(context.Context, io.Reader, any) error
	}
	binary, json := connectproto.NewBinaryCodec(), connectproto.NewJSONCodec()
	for _, tc := range []struct {
		name  string
		ours  codec
		plain codec // connectproto's, whose error must stand when no field is named
		data  string
		field string
	}{
		{"binary valid", binaryCodec{binary}, binary, string(putItems(batchItem("k", "m"))), ""},
		{"binary bad key", binaryCodec{binary}, binary, string(putItems(batchItem("k", "m"), batchItem(notUTF8, "m"))), "items[1].key"},
		{"binary truncated", binaryCodec{binary}, binary, "\x0a\x05a", ""},
		{"json valid", jsonCodec{json}, json, `{"storeId":"s","items":[{"key":"k"}]}`, ""},
		{"json bad key", jsonCodec{json}, json, `{"storeId":"s","items":[{"key":"k"},{"key":"` + notUTF8 + `"}]}`, "items[1].key"},
		{"json lone surrogate", jsonCodec{json}, json, `{"storeId":"\ud800"}`, ""},
		{"json unknown field", jsonCodec{json}, json, `{"nope":"` + notUTF8 + `"}`, ""},
		{"json truncated", jsonCodec{json}, json, `{"storeId":`, ""},
		{"json empty", jsonCodec{json}, json, ``, ""},
	} {
		err := tc.ours.UnmarshalRead(t.Context(), bytes.NewReader([]byte(tc.data)), &kvv1.PutItemsRequest{})
		if tc.field != "" {
			if bad, ok := errors.AsType[*invalidUTF8Error](err); !ok || bad.field != tc.field {
				t.Errorf("%s: got error %v, want one naming %s", tc.name, err, tc.field)
			}
			continue
		}
		want := tc.plain.UnmarshalRead(t.Context(), bytes.NewReader([]byte(tc.data)), &kvv1.PutItemsRequest{})
		if (err == nil) != (want == nil) || err != nil && err.Error() != want.Error() {
			t.Errorf("%s: got error %v, want the decoder's %v", tc.name, err, want)
		}
	}
}

// receiveStream is a ServerStream whose Receive fails with err.
type receiveStream struct {
	connect.ServerStream
	err error
}

func (s receiveStream) Receive(any) error { return s.err }

func TestNameInvalidUTF8(t *testing.T) {
	t.Parallel()
	other := errors.New("other")
	receive := func(err error) error {
		var got error
		handler := nameInvalidUTF8(func(_ context.Context, _ connect.Spec, stream connect.ServerStream) error {
			got = stream.Receive(&kvv1.GetItemRequest{})
			return nil
		})
		_ = handler(t.Context(), connect.Spec{}, receiveStream{err: err})
		return got
	}
	if err := receive(other); err != other {
		t.Errorf("other error: got %v", err)
	}
	if err := receive(io.EOF); err != io.EOF {
		t.Errorf("EOF: got %v", err)
	}
	err := receive(&invalidUTF8Error{field: "items[2].key"})
	cerr, ok := errors.AsType[*connect.Error](err)
	if !ok || cerr.Code() != connect.CodeInvalidArgument || cerr.Message() != "invalid request: items[2].key must be valid UTF-8" {
		t.Fatalf("bad string: got %v", err)
	}
	if len(cerr.Details()) != 1 {
		t.Fatalf("%d details, want 1", len(cerr.Details()))
	}
	detail, derr := connectproto.UnmarshalErrorDetail(cerr.Details()[0])
	if br, ok := detail.(*errdetails.BadRequest); derr != nil || !ok || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "items[2].key" {
		t.Errorf("detail %v (%v), want a BadRequest naming items[2].key", detail, derr)
	}
}
