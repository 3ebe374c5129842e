package service_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
)

// TestBadInput sends invalid requests for every field of every RPC. Each
// must fail with InvalidArgument, name the field in a google.rpc.BadRequest
// detail, and never reach the upstream.
func TestBadInput(t *testing.T) {
	t.Parallel()
	const maxValue = 1 << 10
	st := kvtest.Start(t, kvtest.Options{MaxValueBytes: maxValue})
	client := st.NewClient(kvtest.H2CClient())

	get := func(store, key string) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.GetItem, &kvv1.GetItemRequest{StoreId: store, Key: key})
	}
	put := func(req *kvv1.PutItemRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.PutItem, req)
	}
	del := func(req *kvv1.DeleteItemRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.DeleteItem, req)
	}
	list := func(req *kvv1.ListKeysRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.ListKeys, req)
	}
	cases := []struct {
		name  string
		call  func(context.Context, kvv1connect.KVStoreServiceClient) error
		field string
	}{
		{"get/empty store id", get("", "k"), "store_id"},
		{"get/store id with slash", get("a/b", "k"), "store_id"},
		{"get/store id with space", get("a b", "k"), "store_id"},
		{"get/store id too long", get(strings.Repeat("s", 129), "k"), "store_id"},
		{"get/empty key", get("s", ""), "key"},
		{"get/key too long", get("s", strings.Repeat("k", 1025)), "key"},
		{"get/key dot", get("s", "."), "key"},
		{"get/key dotdot", get("s", ".."), "key"},
		{"get/key dot segment", get("s", "a/./b"), "key"},
		{"get/key dotdot segment", get("s", "a/../b"), "key"},
		{"get/key trailing dot", get("s", "a/."), "key"},
		{"get/key acme", get("s", ".well-known/acme-challenge/x"), "key"},
		{"get/key CR", get("s", "a\rb"), "key"},
		{"get/key LF", get("s", "a\nb"), "key"},
		{"get/key hash", get("s", "a#b"), "key"},
		{"get/key semicolon", get("s", "a;b"), "key"},
		{"get/key question", get("s", "a?b"), "key"},
		{"get/key caret", get("s", "a^b"), "key"},
		{"get/key pipe", get("s", "a|b"), "key"},
		{"get/key single space", get("s", " "), "key"},
		{"get/key single NUL", get("s", "\x00"), "key"},
		{"get/key U+FFFF", get("s", "\uffff"), "key"},
		{"put/empty store id", put(&kvv1.PutItemRequest{Key: "k"}), "store_id"},
		{"put/bad key", put(&kvv1.PutItemRequest{StoreId: "s", Key: "a|b"}), "key"},
		{"put/metadata too long", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", Metadata: strings.Repeat("m", 2001)}), "metadata"},
		{"put/metadata CR", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", Metadata: "a\rb"}), "metadata"},
		{"put/metadata LF", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", Metadata: "a\nb"}), "metadata"},
		{"put/value too large", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: make([]byte, maxValue+1)}), "value"},
		{"put/unknown mode", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", Mode: 9}), "mode"},
		{"put/zero ttl", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", TimeToLive: durationpb.New(0)}), "time_to_live"},
		{"put/negative ttl", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", TimeToLive: durationpb.New(-time.Second)}), "time_to_live"},
		{"put/fractional ttl", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", TimeToLive: durationpb.New(1500 * time.Millisecond)}), "time_to_live"},
		{"put/add with generation", put(&kvv1.PutItemRequest{StoreId: "s", Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD, IfGenerationMatch: proto.Uint64(1)}), "if_generation_match"},
		{"delete/empty store id", del(&kvv1.DeleteItemRequest{Key: "k"}), "store_id"},
		{"delete/bad key", del(&kvv1.DeleteItemRequest{StoreId: "s", Key: "../x"}), "key"},
		{"list/empty store id", list(&kvv1.ListKeysRequest{}), "store_id"},
		{"list/limit too large", list(&kvv1.ListKeysRequest{StoreId: "s", Limit: 1001}), "limit"},
		{"list/prefix with hash", list(&kvv1.ListKeysRequest{StoreId: "s", Prefix: "a#"}), "prefix"},
		{"list/prefix with LF", list(&kvv1.ListKeysRequest{StoreId: "s", Prefix: "a\n"}), "prefix"},
		{"list/prefix too long", list(&kvv1.ListKeysRequest{StoreId: "s", Prefix: strings.Repeat("p", 1025)}), "prefix"},
		{"list/unknown consistency", list(&kvv1.ListKeysRequest{StoreId: "s", Consistency: 7}), "consistency"},
		{"list/foreign cursor", list(&kvv1.ListKeysRequest{StoreId: "s", Cursor: "CgdiYXRjaC0y"}), "cursor"},
		{"list/garbage cursor", list(&kvv1.ListKeysRequest{StoreId: "s", Cursor: "!!"}), "cursor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := tc.call(ctx, client)
			assertInvalidField(t, err, tc.field)
		})
	}
	t.Cleanup(func() {
		if n := st.Requests(); n != 0 {
			t.Errorf("the local store received %d requests; invalid input must never go upstream", n)
		}
	})
}

// TestInvalidUTF8 sends a key that is not UTF-8, which generated clients
// refuse to marshal, as raw Connect requests in binary and JSON.
func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	// GetItemRequest{store_id: "s", key: "a\xffb"} on the wire.
	binary := []byte("\x0a\x01s\x12\x03a\xffb")
	cases := []struct {
		contentType string
		body        []byte
	}{
		{"application/proto", binary},
		{"application/json", []byte(`{"storeId":"s","key":"a` + "\xff" + `b"}`)},
	}
	for _, tc := range cases {
		resp, err := http.Post(st.URL+kvv1connect.KVStoreServiceGetItemProcedure, tc.contentType, bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_argument"`) {
			t.Errorf("%s: %d %s; want 400 invalid_argument", tc.contentType, resp.StatusCode, body)
		}
	}
	if n := st.Requests(); n != 0 {
		t.Errorf("the local store received %d requests", n)
	}
}

// TestCursorScope checks that a cursor only resumes the listing it came from.
func TestCursorScope(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	client := st.NewClient(kvtest.HTTP1Client())
	ctx := t.Context()
	for _, k := range []string{"a1", "a2", "a3"} {
		if _, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s1", Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "s1", Prefix: "a", Limit: 1})
	if err != nil || page.GetNextCursor() == "" {
		t.Fatalf("ListKeys = %v, %v; want a next cursor", page, err)
	}
	before := st.Requests()
	_, err = client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "s2", Prefix: "a", Cursor: page.GetNextCursor()})
	assertInvalidField(t, err, "cursor")
	_, err = client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "s1", Prefix: "b", Cursor: page.GetNextCursor()})
	assertInvalidField(t, err, "cursor")
	if n := st.Requests() - before; n != 0 {
		t.Errorf("%d requests reached the store for misused cursors", n)
	}
}

// assertInvalidField checks for InvalidArgument with a BadRequest detail
// naming field, and a message that names it too.
func assertInvalidField(t *testing.T, err error, field string) {
	t.Helper()
	cerr, ok := errors.AsType[*connect.Error](err)
	if !ok || cerr.Code() != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	if !strings.Contains(cerr.Message(), field) {
		t.Errorf("message %q does not name %s", cerr.Message(), field)
	}
	for _, d := range cerr.Details() {
		msg, err := connectproto.UnmarshalErrorDetail(d)
		if err != nil {
			continue
		}
		if br, ok := msg.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
			}
			t.Fatalf("BadRequest names %v, not %s", br.GetFieldViolations(), field)
		}
	}
	t.Fatalf("no google.rpc.BadRequest detail in %v", cerr)
}

// unaryCall binds a request to one of the client's unary methods, for
// tables of calls that only check the error.
func unaryCall[Req, Res any](method func(kvv1connect.KVStoreServiceClient, context.Context, *Req) (*Res, error), req *Req) func(context.Context, kvv1connect.KVStoreServiceClient) error {
	return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
		_, err := method(c, ctx, req)
		return err
	}
}
