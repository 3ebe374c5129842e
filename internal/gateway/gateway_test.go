package gateway_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRPCLog checks the per-RPC log line: procedure, code and duration,
// and never the value or the metadata.
func TestRPCLog(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
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
