package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// token is one entry of a test token file.
type token struct {
	name, secret string
	stores       []string
	allow        []string
	// rate and burst are written when rate is set.
	rate, burst string
}

// writeTokens writes a token file listing tokens to path, replacing it
// whole as an operator's tooling would (write, then rename).
func writeTokens(t *testing.T, path string, tokens ...token) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, tk := range tokens {
		sum := sha256.Sum256([]byte(tk.secret))
		fmt.Fprintf(&b, "  - name: %s\n    sha256: %q\n    stores: [%s]\n    allow: [%s]\n",
			tk.name, hex.EncodeToString(sum[:]), quoteAll(tk.stores), strings.Join(tk.allow, ", "))
		if tk.rate != "" {
			fmt.Fprintf(&b, "    rate: %s\n    burst: %s\n", tk.rate, tk.burst)
		}
	}
	writeFile(t, path, b.String())
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// tokensPath is a token file path in a fresh directory of the test's.
func tokensPath(t *testing.T) string { return filepath.Join(t.TempDir(), "tokens.yaml") }

// protocol is one of the three RPC protocols, with the HTTP version its
// clients use.
type protocol struct {
	name   string
	client func() *http.Client
	opts   []connecthttp.Option
}

var protocols = []protocol{
	{"connect", kvtest.HTTP1Client, nil},
	{"grpc", kvtest.H2CClient, []connecthttp.Option{connecthttp.WithGRPC()}},
	{"grpc-web", kvtest.HTTP1Client, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
}

// credentials are the headers a test caller sends.
type credentials struct {
	bearer, fastlyKey, authorization string
}

func (c credentials) apply(h http.Header) {
	switch {
	case c.authorization != "":
		h.Set("Authorization", c.authorization)
	case c.bearer != "":
		h.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.fastlyKey != "" {
		h.Set("Fastly-Key", c.fastlyKey)
	}
}

// callerTransport sends a caller's credentials with every request and,
// when seen is set, copies every response's headers, body and trailers
// into it.
type callerTransport struct {
	base  http.RoundTripper
	creds credentials
	seen  *testutil.LockedBuffer
}

func (ct callerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	ct.creds.apply(r.Header)
	resp, err := ct.base.RoundTrip(r)
	if err != nil || ct.seen == nil {
		return resp, err
	}
	_ = resp.Header.Write(ct.seen)
	resp.Body = &recordedBody{ReadCloser: resp.Body, resp: resp, seen: ct.seen}
	return resp, nil
}

// recordedBody copies a response body, and its trailers once it ends.
type recordedBody struct {
	io.ReadCloser
	resp *http.Response
	seen *testutil.LockedBuffer
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	_, _ = b.seen.Write(p[:n])
	if errors.Is(err, io.EOF) {
		_ = b.resp.Trailer.Write(b.seen)
	}
	return n, err
}

// newClient is a KV client of st over proto, sending creds.
func newClient(t *testing.T, st *kvtest.Stack, proto protocol, creds credentials, seen *testutil.LockedBuffer) kvv1connect.KVStoreServiceClient {
	t.Helper()
	hc := proto.client()
	t.Cleanup(hc.CloseIdleConnections)
	hc.Transport = callerTransport{base: hc.Transport, creds: creds, seen: seen}
	return st.NewClient(hc, proto.opts...)
}

// rpc is one KV RPC, called on a store; it returns the RPC's error.
type rpc struct {
	name  string
	right string
	call  func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error
}

var rpcs = []rpc{
	{"GetItem", "read", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		_, err := c.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "k"})
		return err
	}},
	{"ListKeys", "read", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		_, err := c.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store})
		return err
	}},
	{"StreamKeys", "read", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		s, err := c.StreamKeys(ctx, &kvv1.StreamKeysRequest{StoreId: store})
		if err != nil {
			return err
		}
		_, err = testutil.ReadStream(s.Receive)
		return err
	}},
	{"GetItems", "read", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		s, err := c.GetItems(ctx, &kvv1.GetItemsRequest{StoreId: store, Keys: []string{"k"}})
		if err != nil {
			return err
		}
		_, err = testutil.ReadStream(s.Receive)
		return err
	}},
	{"WatchItems", "read", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		// The first message is the initial state; a watch then runs on,
		// so the call ends there.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := c.WatchItems(ctx, &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{"k"}, SendInitialState: true})
		if err != nil {
			return err
		}
		_, err = s.Receive()
		return err
	}},
	{"PutItem", "write", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		_, err := c.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "k", Value: []byte("v")})
		return err
	}},
	{"PutItems", "write", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		_, err := c.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{{Key: "k", Value: []byte("v")}}})
		return err
	}},
	{"BatchPutItems", "write", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		s, err := c.BatchPutItems(ctx)
		if err != nil {
			return err
		}
		msg := &kvv1.BatchPutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{{Key: "k", Value: []byte("v")}}}
		if err := s.Send(msg); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = s.CloseAndReceive()
		return err
	}},
	{"DeleteItem", "delete", func(ctx context.Context, c kvv1connect.KVStoreServiceClient, store string) error {
		_, err := c.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "k"})
		return err
	}},
}

// logTo is a logger writing text lines to buf.
func logTo(buf *testutil.LockedBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
