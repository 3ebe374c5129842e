package service_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
)

// leak is put in upstream error bodies; it must never reach a caller.
const leak = "upstream-secret-detail"

// TestUpstreamStatusMapping drives every upstream status that the local
// store cannot produce through a test HTTP server standing in for Fastly,
// and checks the Connect code, the details, and that the upstream body does
// not leak into the public message.
func TestUpstreamStatusMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		header    http.Header
		want      connect.Code
		reason    string
		retry     time.Duration // RetryInfo expected when non-zero
		badReqFld string        // BadRequest field expected when set
	}{
		{name: "400", status: 400, want: connect.CodeInvalidArgument, reason: "UPSTREAM_BAD_REQUEST"},
		{name: "401", status: 401, want: connect.CodeUnauthenticated, reason: "UPSTREAM_UNAUTHENTICATED"},
		{name: "403", status: 403, want: connect.CodePermissionDenied, reason: "UPSTREAM_PERMISSION_DENIED"},
		{name: "413", status: 413, want: connect.CodeInvalidArgument, reason: "VALUE_TOO_LARGE", badReqFld: "value"},
		{name: "429 without hint", status: 429, want: connect.CodeResourceExhausted, reason: "UPSTREAM_RATE_LIMITED"},
		{name: "429 retry-after", status: 429, header: http.Header{"Retry-After": {"7"}}, want: connect.CodeResourceExhausted, reason: "UPSTREAM_RATE_LIMITED", retry: 7 * time.Second},
		{name: "500", status: 500, want: connect.CodeUnavailable, reason: "UPSTREAM_UNAVAILABLE"},
		{name: "502", status: 502, want: connect.CodeUnavailable, reason: "UPSTREAM_UNAVAILABLE"},
		{name: "503 retry-after", status: 503, header: http.Header{"Retry-After": {"3"}}, want: connect.CodeUnavailable, reason: "UPSTREAM_UNAVAILABLE", retry: 3 * time.Second},
		{name: "504", status: 504, want: connect.CodeUnavailable, reason: "UPSTREAM_UNAVAILABLE"},
		{name: "418", status: 418, want: connect.CodeUnknown, reason: "UPSTREAM_UNEXPECTED_STATUS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fastly := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(`{"msg":"` + leak + `"}`))
			})
			// No retries: the statuses are what this test is about.
			st := kvtest.Start(t, kvtest.Options{Upstream: fastly, Retry: upstream.RetryPolicy{MaxAttempts: 1}})
			client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
			ctx := t.Context()
			calls := map[string]error{}
			_, calls["GetItem"] = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
			_, calls["PutItem"] = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte("v")})
			_, calls["DeleteItem"] = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: "s", Key: "k"})
			_, calls["ListKeys"] = client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "s"})
			for rpc, err := range calls {
				cerr := asConnectError(t, rpc, err, tc.want)
				if strings.Contains(cerr.Message(), leak) {
					t.Errorf("%s: message %q leaks the upstream body", rpc, cerr.Message())
				}
				details := detailsOf(cerr)
				info, _ := findDetail[*errdetails.ErrorInfo](details)
				if info.GetReason() != tc.reason || info.GetDomain() != "kvgate" || info.GetMetadata()["http_status"] == "" {
					t.Errorf("%s: ErrorInfo = %v; want reason %s", rpc, info, tc.reason)
				}
				retry, ok := findDetail[*errdetails.RetryInfo](details)
				switch {
				case tc.retry == 0 && ok:
					t.Errorf("%s: unexpected RetryInfo %v", rpc, retry)
				case tc.retry != 0 && retry.GetRetryDelay().AsDuration() != tc.retry:
					t.Errorf("%s: RetryInfo = %v; want %v", rpc, retry, tc.retry)
				}
				if tc.badReqFld != "" {
					br, _ := findDetail[*errdetails.BadRequest](details)
					if len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != tc.badReqFld {
						t.Errorf("%s: BadRequest = %v; want field %s", rpc, br, tc.badReqFld)
					}
				}
			}
		})
	}
}

// TestLocalStoreOutcomes maps the statuses the local store really produces.
func TestLocalStoreOutcomes(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	client := st.NewClient(kvtest.HTTP1Client())
	ctx := t.Context()
	_, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "never-written"})
	testutil.WantCode(t, "ListKeys of an unknown store", err, connect.CodeNotFound)
	_, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "never-written", Key: "k"})
	testutil.WantCode(t, "GetItem of an unknown store", err, connect.CodeNotFound)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte("v")})
	mustOK(t, "PutItem", err)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD})
	testutil.WantCode(t, "add on an existing key", err, connect.CodeAlreadyExists)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", IfGenerationMatch: proto.Uint64(0)})
	testutil.WantCode(t, "generation 0 on an existing key", err, connect.CodeAborted)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "new", IfGenerationMatch: proto.Uint64(0)})
	mustOK(t, "generation 0 on a missing key", err)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: "s", Key: "k", IfGenerationMatch: proto.Uint64(1)})
	testutil.WantCode(t, "delete with a stale generation", err, connect.CodeAborted)
}

// TestTransportFailures covers an upstream that drops the connection, one
// that sends an unreadable answer, one that cannot be reached, and a caller
// deadline that passes while the upstream is slow.
func TestTransportFailures(t *testing.T) {
	t.Parallel()
	t.Run("dropped connection", func(t *testing.T) {
		t.Parallel()
		drop := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		st := kvtest.Start(t, kvtest.Options{Upstream: drop})
		_, err := st.NewClient(kvtest.HTTP1Client()).GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
		cerr := asConnectError(t, "GetItem", err, connect.CodeUnavailable)
		if strings.Contains(cerr.Message(), "127.0.0.1") {
			t.Errorf("message %q leaks the upstream address", cerr.Message())
		}
	})
	t.Run("missing generation", func(t *testing.T) {
		t.Parallel()
		noGen := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("v")) })
		st := kvtest.Start(t, kvtest.Options{Upstream: noGen})
		_, err := st.NewClient(kvtest.HTTP1Client()).GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
		asConnectError(t, "GetItem", err, connect.CodeUnavailable)
	})
	t.Run("unparsable listing", func(t *testing.T) {
		t.Parallel()
		html := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) })
		st := kvtest.Start(t, kvtest.Options{Upstream: html})
		_, err := st.NewClient(kvtest.HTTP1Client()).ListKeys(t.Context(), &kvv1.ListKeysRequest{StoreId: "s"})
		asConnectError(t, "ListKeys", err, connect.CodeUnavailable)
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		cancelled := make(chan struct{})
		slow := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // hold the request until kvgate gives up on it
			close(cancelled)
		})
		st := kvtest.Start(t, kvtest.Options{Upstream: slow})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := st.NewClient(kvtest.H2CClient(), connectGRPC()...).GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
		asConnectError(t, "GetItem", err, connect.CodeDeadlineExceeded)
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			t.Error("the upstream request was not cancelled when the deadline passed")
		}
	})
}

func asConnectError(t *testing.T, what string, err error, want connect.Code) *connect.Error {
	t.Helper()
	cerr, ok := errors.AsType[*connect.Error](err)
	if !ok || cerr.Code() != want {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
	return cerr
}

func detailsOf(cerr *connect.Error) []proto.Message {
	var out []proto.Message
	for _, d := range cerr.Details() {
		if m, err := connectproto.UnmarshalErrorDetail(d); err == nil {
			out = append(out, m)
		}
	}
	return out
}

func findDetail[T proto.Message](details []proto.Message) (T, bool) {
	for _, d := range details {
		if m, ok := d.(T); ok {
			return m, true
		}
	}
	var zero T
	return zero, false
}
