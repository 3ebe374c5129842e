package httpserver_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
)

// reboundClient is an HTTP client whose every host name resolves to addr,
// as a name does for a browser once its attacker has rebound it to the
// loopback address kvgate listens on.
func reboundClient(t *testing.T, addr string, h2c bool) *http.Client {
	p := new(http.Protocols)
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	var d net.Dialer
	tr := &http.Transport{Protocols: p, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestDNSRebinding calls every RPC shape of a kvgate bound to loopback
// through a name that resolves to it, in each protocol: every call is
// refused before any RPC work (nothing goes upstream), while the same
// calls through localhost succeed.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	if err := st.Client.PutItem(t.Context(), "demo", "seed", []byte("v"), upstream.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(st.Addr)
	if err != nil {
		t.Fatal(err)
	}
	protocols := []struct {
		name string
		h2c  bool
		opts []connecthttp.Option
	}{
		{"connect", false, nil},
		{"grpc", true, []connecthttp.Option{connecthttp.WithGRPC()}},
		{"grpcweb", false, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			hc := reboundClient(t, st.Addr, p.h2c)
			client := func(host string) kvv1connect.KVStoreServiceClient {
				return kvv1connect.NewKVStoreServiceClient(connect.NewClient(
					connecthttp.NewTransport(hc, "http://"+net.JoinHostPort(host, port), p.opts...)))
			}
			before := st.Requests()
			for shape, err := range callEveryShape(t.Context(), client("rebind.example")) {
				if err == nil {
					t.Errorf("%s: a call through a rebound name succeeded", shape)
				}
			}
			if n := st.Requests() - before; n != 0 {
				t.Errorf("refused calls sent %d requests upstream, want 0", n)
			}
			for shape, err := range callEveryShape(t.Context(), client("localhost")) {
				if err != nil {
					t.Errorf("%s through localhost: %v", shape, err)
				}
			}
		})
	}
}

// callEveryShape makes a unary, a server-streaming and a
// client-streaming call and returns their errors by shape.
func callEveryShape(ctx context.Context, c kvv1connect.KVStoreServiceClient) map[string]error {
	errs := map[string]error{}
	_, errs["unary"] = c.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "demo"})
	errs["server stream"] = func() error {
		stream, err := c.StreamKeys(ctx, &kvv1.StreamKeysRequest{StoreId: "demo"})
		if err != nil {
			return err
		}
		_, err = testutil.ReadStream(stream.Receive)
		return err
	}()
	errs["client stream"] = func() error {
		stream, err := c.BatchPutItems(ctx)
		if err != nil {
			return err
		}
		// A refused stream's Send may fail with io.EOF; CloseAndReceive
		// says why.
		_ = stream.Send(&kvv1.BatchPutItemsRequest{StoreId: "demo", Items: []*kvv1.BatchItem{{Key: "k", Value: []byte("v")}}})
		_, err = stream.CloseAndReceive()
		return err
	}()
	return errs
}
