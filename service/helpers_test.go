package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// rpcProtocol is one way a client can reach kvgate: a protocol and codec
// over one HTTP version.
type rpcProtocol struct {
	name   string
	client func() *http.Client
	opts   []connecthttp.Option
}

// batchMessages cuts items into BatchPutItems messages of at most size
// items. The first message names the store; later ones repeat it on every
// other message, as the contract allows.
func batchMessages(store string, items []*kvv1.BatchItem, size int) []*kvv1.BatchPutItemsRequest {
	var msgs []*kvv1.BatchPutItemsRequest
	for i := 0; i < len(items); i += size {
		msg := &kvv1.BatchPutItemsRequest{Items: items[i:min(i+size, len(items))]}
		if len(msgs)%2 == 0 {
			msg.StoreId = store
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		msgs = append(msgs, &kvv1.BatchPutItemsRequest{StoreId: store})
	}
	return msgs
}

// batchPut sends msgs on one BatchPutItems stream and returns the outcome.
// When the server ends the call early, Send reports io.EOF and the error
// comes from CloseAndReceive.
func batchPut(ctx context.Context, client kvv1connect.KVStoreServiceClient, msgs []*kvv1.BatchPutItemsRequest) (*kvv1.BatchPutItemsResponse, error) {
	stream, err := client.BatchPutItems(ctx)
	if err != nil {
		return nil, err
	}
	for _, msg := range msgs {
		if err := stream.Send(msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	return stream.CloseAndReceive()
}

// streamKeys reads a StreamKeys stream to its end and returns its messages
// and how it ended (nil for a clean end).
func streamKeys(ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.StreamKeysRequest) ([]*kvv1.StreamKeysResponse, error) {
	stream, err := client.StreamKeys(ctx, req)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	return testutil.ReadStream(stream.Receive)
}

// keysOf concatenates the keys of msgs.
func keysOf(msgs []*kvv1.StreamKeysResponse) []string {
	var keys []string
	for _, m := range msgs {
		keys = append(keys, m.GetKeys()...)
	}
	return keys
}

// storedItem is what a key is expected to hold.
type storedItem struct {
	value    []byte
	metadata string
}

// checkStored reads every key of want (and of absent) straight from the
// store through the REST client, a few at a time, and reports each item
// that differs: a wrong value or metadata, a missing item, or an item that
// should not exist.
func checkStored(t *testing.T, ctx context.Context, kv *upstream.Client, store string, want map[string]storedItem, absent []string) {
	t.Helper()
	var (
		mu       sync.Mutex
		problems []string
		bad      int
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		bad++
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for key, w := range want {
		g.Go(func() error {
			item, err := kv.GetItem(gctx, store, key)
			switch {
			case err != nil:
				report("%q: %v", key, err)
			case !bytes.Equal(item.Value, w.value) || item.Metadata != w.metadata:
				report("%q = value %q metadata %q; want value %q metadata %q", key, item.Value, item.Metadata, w.value, w.metadata)
			}
			return gctx.Err()
		})
	}
	for _, key := range absent {
		g.Go(func() error {
			item, err := kv.GetItem(gctx, store, key)
			switch {
			case err == nil:
				report("%q exists (value %q) but must not", key, item.Value)
			case upstream.KindOf(err) != upstream.KindNotFound:
				report("%q: %v; want 404", key, err)
			}
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("reading %s back: %v", store, err)
	}
	if bad > 0 {
		t.Errorf("%d of %d items of %s are wrong, for example:\n  %s", bad, len(want)+len(absent), store, strings.Join(problems, "\n  "))
	}
}

// wantFailure is a BatchFailure a test expects; field is a word its reason
// must contain.
type wantFailure struct {
	index uint64
	key   string
	code  string
	field string
}

// checkFailures compares the failures a batch write reported with want, in
// order.
func checkFailures(t *testing.T, got []*kvv1.BatchFailure, want []wantFailure) {
	t.Helper()
	n := max(len(got), len(want))
	for i := range n {
		switch {
		case i >= len(got):
			t.Errorf("missing failure %+v", want[i])
		case i >= len(want):
			t.Errorf("unexpected failure %v", got[i])
		default:
			g, w := got[i], want[i]
			if g.GetIndex() != w.index || g.GetKey() != w.key || g.GetCode() != w.code || !strings.Contains(g.GetReason(), w.field) {
				t.Errorf("failure %d = {index %d, key %q, code %q, reason %q}; want index %d, key %q, code %q, a reason naming %q",
					i, g.GetIndex(), g.GetKey(), g.GetCode(), g.GetReason(), w.index, w.key, w.code, w.field)
			}
		}
	}
}

// batchOutcome is the answer of a batch write that completed: a
// BatchPutItemsResponse or a PutItemsResponse.
type batchOutcome interface {
	GetWritten() uint64
	GetFailures() []*kvv1.BatchFailure
}

// checkOutcome checks the answer of a batch write of n items against
// wantFails, and what the store holds against want and absent.
func checkOutcome(t *testing.T, ctx context.Context, kv *upstream.Client, store string, res batchOutcome, n int, wantFails []wantFailure, want map[string]storedItem, absent []string) {
	t.Helper()
	checkFailures(t, res.GetFailures(), wantFails)
	if w := uint64(n - len(wantFails)); res.GetWritten() != w {
		t.Errorf("written = %d; want %d", res.GetWritten(), w)
	}
	checkStored(t, ctx, kv, store, want, absent)
}

// batchProgress returns the BatchProgress detail of err, failing the test
// unless err is a Connect error with code want that carries one.
func batchProgress(t *testing.T, what string, err error, want connect.Code) (*connect.Error, *kvv1.BatchProgress) {
	t.Helper()
	cerr := asConnectError(t, what, err, want)
	progress, ok := findDetail[*kvv1.BatchProgress](detailsOf(cerr))
	if !ok {
		t.Fatalf("%s: error %v carries no BatchProgress detail", what, cerr)
	}
	return cerr, progress
}

// writtenIndexes expands BatchProgress.written, checking that its runs are
// ordered, non-empty, non-overlapping and within the items received.
func writtenIndexes(t *testing.T, p *kvv1.BatchProgress) []uint64 {
	t.Helper()
	var out []uint64
	var prevEnd uint64
	for i, r := range p.GetWritten() {
		if r.GetStart() >= r.GetEnd() || (i > 0 && r.GetStart() <= prevEnd) || r.GetEnd() > p.GetReceived() {
			t.Fatalf("BatchProgress.written %v: run %d is empty, out of order, touching the previous one or past received %d", p.GetWritten(), i, p.GetReceived())
		}
		for x := r.GetStart(); x < r.GetEnd(); x++ {
			out = append(out, x)
		}
		prevEnd = r.GetEnd()
	}
	return out
}

// settle polls count until it has not changed for quiet and returns its
// value; it fails the test when count is still changing at the deadline.
func settle(t *testing.T, count func() int64, quiet, deadline time.Duration) int64 {
	t.Helper()
	last, since := count(), time.Now()
	for end := time.Now().Add(deadline); time.Now().Before(end); {
		time.Sleep(quiet / 10)
		if n := count(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return last
		}
	}
	t.Fatalf("count still changing after %v (now %d)", deadline, last)
	return 0
}

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t *testing.T, what string, deadline time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(deadline); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fillStore writes keys straight into the store with batch PUTs, bypassing
// kvgate, each holding its own key as the value.
func fillStore(t *testing.T, ctx context.Context, kv *upstream.Client, store string, keys []string) {
	t.Helper()
	for i := 0; i < len(keys); i += 1000 {
		var body []byte
		for _, k := range keys[i:min(i+1000, len(keys))] {
			body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: k, Value: []byte(k)})
		}
		res, err := kv.PutBatch(ctx, store, body)
		if err != nil || len(res.LineErrors) > 0 {
			t.Fatalf("filling %s: %v %v", store, err, res)
		}
	}
}

// handlerTransport serves requests with an http.Handler in process, for
// reading many items back from the local store without a socket per call.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// inProcessClient is a REST client that calls store's HTTP handler in
// process: the same API as the stack's Client, without the loopback hop.
func inProcessClient(t *testing.T, store *localstore.Store) *upstream.Client {
	t.Helper()
	kv, err := upstream.NewClient(upstream.ClientConfig{
		BaseURL:    "http://localstore.invalid",
		HTTPClient: &http.Client{Transport: handlerTransport{store.Handler()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// raceEnabled reports whether the test binary was built with -race, which
// makes every request several times slower.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
