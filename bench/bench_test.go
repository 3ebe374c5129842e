// Package bench measures kvgate against the same calls made directly with
// the REST client on the same local store, in the same run, and reports the
// ratio. Run with `make bench`.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
)

const store = "bench"

var sizes = []int{1 << 10, 64 << 10}

// protocols are the kvgate clients compared with the direct REST call.
func protocols(st *kvtest.Stack) map[string]kvv1connect.KVStoreServiceClient {
	return map[string]kvv1connect.KVStoreServiceClient{
		"connect_h1": st.NewClient(kvtest.HTTP1Client()),
		"grpc_h2c":   st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC()),
	}
}

// pair times a direct call and the same call through kvgate alternately,
// so both see the same machine state, and reports each and their ratio.
func pair(b *testing.B, direct, viaKvgate func() error) {
	b.Helper()
	var dDirect, dKvgate time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := direct(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := viaKvgate(); err != nil {
			b.Fatal(err)
		}
		dDirect += t1.Sub(t0)
		dKvgate += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(dDirect.Nanoseconds())/n, "direct-ns/op")
	b.ReportMetric(float64(dKvgate.Nanoseconds())/n, "kvgate-ns/op")
	b.ReportMetric(float64(dKvgate)/float64(dDirect), "kvgate/direct")
}

func BenchmarkGetItem(b *testing.B) {
	st := kvtest.Start(b, kvtest.Options{})
	ctx := context.Background()
	for _, size := range sizes {
		key := fmt.Sprintf("get-%d", size)
		if err := st.Client.PutItem(ctx, store, key, randomBytes(size), upstream.PutOptions{Metadata: "m"}); err != nil {
			b.Fatal(err)
		}
		for name, client := range protocols(st) {
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				pair(b,
					func() error { _, err := st.Client.GetItem(ctx, store, key); return err },
					func() error {
						_, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
						return err
					})
			})
		}
	}
}

func BenchmarkPutItem(b *testing.B) {
	st := kvtest.Start(b, kvtest.Options{})
	ctx := context.Background()
	for _, size := range sizes {
		value := randomBytes(size)
		for name, client := range protocols(st) {
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				pair(b,
					func() error {
						return st.Client.PutItem(ctx, store, "put-direct", value, upstream.PutOptions{Metadata: "m"})
					},
					func() error {
						_, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "put-kvgate", Value: value, Metadata: "m"})
						return err
					})
			})
		}
	}
}

// BenchmarkGetItemLargeHeap reads a 25 MiB value through kvgate and
// directly from the local store, with raw HTTP clients that discard the
// body, so what each allocates is the server side's: kvgate plus the store,
// or the store alone. The difference, in values, is what kvgate's handler
// path costs: it should be about one value's worth (the buffer the upstream
// body is read into), with the response encoding buffer pooled.
func BenchmarkGetItemLargeHeap(b *testing.B) {
	const size = upstream.DefaultMaxValueBytes
	st := kvtest.Start(b, kvtest.Options{})
	ctx := context.Background()
	if err := st.Client.PutItem(ctx, store, "large", randomBytes(size), upstream.PutOptions{}); err != nil {
		b.Fatal(err)
	}
	hc := kvtest.HTTP1Client()
	reqBody, err := proto.Marshal(&kvv1.GetItemRequest{StoreId: store, Key: "large"})
	if err != nil {
		b.Fatal(err)
	}
	direct := func() error {
		return discard(hc.Get(st.UpstreamURL + "/resources/stores/kv/" + store + "/keys/large"))
	}
	viaKvgate := func() error {
		return discard(hc.Post(st.URL+kvv1connect.KVStoreServiceGetItemProcedure, "application/proto", bytes.NewReader(reqBody)))
	}
	// Warm both paths so pools and connections exist before measuring.
	for range 2 {
		if err := direct(); err != nil {
			b.Fatal(err)
		}
		if err := viaKvgate(); err != nil {
			b.Fatal(err)
		}
	}
	var directBytes, kvgateBytes uint64
	b.ResetTimer()
	for b.Loop() {
		directBytes += allocated(b, direct)
		kvgateBytes += allocated(b, viaKvgate)
	}
	n := float64(b.N)
	b.ReportMetric(float64(directBytes)/n/size, "direct-values/op")
	b.ReportMetric(float64(kvgateBytes)/n/size, "kvgate-values/op")
	b.ReportMetric((float64(kvgateBytes)-float64(directBytes))/n/size, "extra-values/op")
}

// allocated reports how many bytes the process allocated while fn ran.
func allocated(b *testing.B, fn func() error) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func discard(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
