package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestRPCLog checks the per-RPC log line: procedure, code and duration,
// and never the value or the metadata.
func TestRPCLog(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	st := kvtest.Start(t, kvtest.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	client := st.NewClient(kvtest.HTTP1Client())
	const secretValue, secretMeta = "value-that-must-not-be-logged", "metadata-that-must-not-be-logged"
	if _, err := client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte(secretValue), Metadata: secretMeta}); err != nil {
		t.Fatal(err)
	}
	_, _ = client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte(secretValue), Metadata: secretMeta, Mode: kvv1.PutMode_PUT_MODE_ADD})
	out := logs.String()
	for _, want := range []string{
		"procedure=/fastly.kv.v1.KVStoreService/PutItem code=ok duration=",
		"procedure=/fastly.kv.v1.KVStoreService/PutItem code=already_exists duration=",
		"cause=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secretValue) || strings.Contains(out, secretMeta) {
		t.Errorf("log leaks a value or metadata:\n%s", out)
	}
}

// TestLargeValues moves a 25 MiB value (kvgate's default limit) through
// PutItem and GetItem in each protocol; clients must raise their own 4 MiB
// receive limit.
func TestLargeValues(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	const size = 25 << 20
	value := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	limit := connecthttp.WithReadMaxBytes(size + 1<<20)
	cases := map[string][]connecthttp.Option{
		"connect": {limit},
		"grpc":    {limit, connecthttp.WithGRPC()},
		"grpcweb": {limit, connecthttp.WithGRPCWeb()},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			client := st.NewClient(kvtest.H2CClient(), opts...)
			if _, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "large", Key: name, Value: value}); err != nil {
				t.Fatalf("PutItem: %v", err)
			}
			res, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "large", Key: name})
			if err != nil {
				t.Fatalf("GetItem: %v", err)
			}
			if !bytes.Equal(res.GetItem().GetValue(), value) {
				t.Fatalf("GetItem returned %d bytes, not the %d written", len(res.GetItem().GetValue()), len(value))
			}
		})
	}
}

// TestDeadlines checks that kvgate bounds every RPC: a unary call without a
// deadline gets the default, a caller's long deadline is capped, and a
// stream without one gets the cap. In each case the upstream request is
// cancelled when the deadline passes.
func TestDeadlines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		deadline time.Duration // the caller's; 0 sets none
		call     func(context.Context, kvv1connect.KVStoreServiceClient) error
	}{
		{"unary without deadline", 0, func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			_, err := c.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
			return err
		}},
		{"unary with a long deadline", time.Hour, func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			_, err := c.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
			return err
		}},
		{"stream without deadline", 0, func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			stream, err := c.StreamKeys(ctx, &kvv1.StreamKeysRequest{StoreId: "s"})
			if err != nil {
				return err
			}
			defer stream.Close()
			_, err = stream.Receive()
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cancelled := make(chan struct{}, 1)
			slow := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				<-r.Context().Done() // hold every request until kvgate gives up on it
				cancelled <- struct{}{}
			})
			st := kvtest.Start(t, kvtest.Options{
				Upstream:       slow,
				DefaultTimeout: 100 * time.Millisecond,
				MaxTimeout:     300 * time.Millisecond,
			})
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			err := tc.call(ctx, st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC()))
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
				t.Fatalf("got %v, want deadline_exceeded", err)
			}
			select {
			case <-cancelled:
			case <-time.After(30 * time.Second):
				t.Fatal("the upstream request was not cancelled")
			}
		})
	}
}

// TestHealth checks grpc.health.v1 in its JSON form, which must use the
// standard enum names.
func TestHealth(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	cases := []struct {
		method, body, want string
		status             int
	}{
		{"Check", `{"service":""}`, `{"status":"SERVING"}`, http.StatusOK},
		{"Check", `{"service":"fastly.kv.v1.KVStoreService"}`, `{"status":"SERVING"}`, http.StatusOK},
		{"Check", `{"service":"nope"}`, `"not_found"`, http.StatusNotFound},
		{"List", `{}`, `"fastly.kv.v1.KVStoreService":{"status":"SERVING"}`, http.StatusOK},
	}
	for _, tc := range cases {
		resp, err := http.Post(st.URL+"/grpc.health.v1.Health/"+tc.method, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s = %d %s; want %d containing %s", tc.method, tc.body, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

// TestLongStreamOutlivesReadHeaderTimeout guards against a Go regression
// (golang/go#80876) in which ReadHeaderTimeout, with no ReadTimeout, cut
// healthy cleartext HTTP/2 connections: a stream lasting several times the
// header timeout must run to its end.
func TestLongStreamOutlivesReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{ReadHeaderTimeout: 50 * time.Millisecond})
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	items := make([]*kvv1.BatchItem, 8)
	for i := range items {
		items[i] = &kvv1.BatchItem{Key: fmt.Sprintf("k%d", i)}
	}
	if _, err := client.PutItems(t.Context(), &kvv1.PutItemsRequest{StoreId: "s", Items: items}); err != nil {
		t.Fatal(err)
	}
	st.Store.SetFaults(localstore.Faults{Latency: 60 * time.Millisecond}) // 8 pages of 1 take ~8x the timeout
	stream, err := client.StreamKeys(t.Context(), &kvv1.StreamKeysRequest{StoreId: "s", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	n := 0
	for msg, err := range testutil.Messages(stream.Receive) {
		if err != nil {
			t.Fatalf("after %d keys: %v", n, err)
		}
		n += len(msg.GetKeys())
	}
	if n != len(items) {
		t.Fatalf("streamed %d keys, want %d", n, len(items))
	}
}
