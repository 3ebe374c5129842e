package service

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// writeAll runs items through one batcher over f and returns the answer.
func writeAll(t *testing.T, f *fakeKV, cfg BatchConfig, items []*kvv1.BatchItem) *kvv1.BatchPutItemsResponse {
	t.Helper()
	b := New(f, Config{Batch: cfg}).newBatcher(t.Context(), "store")
	for _, item := range items {
		if err := b.add(item); err != nil {
			t.Fatalf("add(%q): %v", item.GetKey(), err)
		}
	}
	res, err := b.finish()
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	if res.GetWritten() != uint64(len(items)) || len(res.GetFailures()) != 0 {
		t.Fatalf("written %d of %d, failures %v", res.GetWritten(), len(items), res.GetFailures())
	}
	if len(f.clashes) > 0 {
		t.Errorf("ops sharing a key ran at once, on %q", f.clashes)
	}
	return res
}

func item(key, value string) *kvv1.BatchItem {
	return &kvv1.BatchItem{Key: key, Value: []byte(value)}
}

// describeOps renders the ops in start order, "b:k1,k2" for a batch and
// "s:k" for a single PUT.
func describeOps(ops []fakeOp) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		kind := "b:"
		if op.single {
			kind = "s:"
		}
		out[i] = kind + strings.Join(op.keys, ",")
	}
	return out
}

func TestBatcherSealsOnRepeatedKey(t *testing.T) {
	f := &fakeKV{pause: time.Millisecond}
	writeAll(t, f, BatchConfig{MaxLines: 10, Concurrency: 4},
		[]*kvv1.BatchItem{item("a", "1"), item("b", "2"), item("a", "3"), item("c", "4")})
	if got, want := describeOps(f.ops), []string{"b:a,b", "b:a,c"}; !slices.Equal(got, want) {
		t.Errorf("ops %q; want %q", got, want)
	}
	if f.values["a"] != "3" {
		t.Errorf("a = %q; want the later item's 3", f.values["a"])
	}
}

func TestBatcherSinglePuts(t *testing.T) {
	f := &fakeKV{}
	big := strings.Repeat("v", 600)
	writeAll(t, f, BatchConfig{MaxLines: 10, MaxBytes: 512, Concurrency: 1}, []*kvv1.BatchItem{
		item("x", "1"),
		{Key: "add", Value: []byte("2"), Mode: kvv1.PutMode_PUT_MODE_ADD},
		{Key: "gen", Value: []byte("3"), IfGenerationMatch: proto.Uint64(7)},
		{Key: "app", Value: []byte("4"), Mode: kvv1.PutMode_PUT_MODE_APPEND},
		item("big", big), // larger than a batch body may be
		item("w", "5"),
		{Key: "x", Value: []byte("6"), Mode: kvv1.PutMode_PUT_MODE_PREPEND}, // x's batch goes first
	})
	want := []string{"s:add", "s:gen", "s:app", "s:big", "b:x,w", "s:x"}
	if got := describeOps(f.ops); !slices.Equal(got, want) {
		t.Errorf("ops %q; want %q", got, want)
	}
	if f.values["x"] != "6" || f.values["big"] != big {
		t.Errorf("x = %q, big holds %d bytes; want 6 and %d", f.values["x"], len(f.values["big"]), len(big))
	}
}

// TestBatcherLaterItemWins writes many items over few keys, mixing batch
// lines and single PUTs, with several ops in flight: each key must end
// with its last item, and no two ops sharing a key may overlap.
func TestBatcherLaterItemWins(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	f := &fakeKV{pause: 200 * time.Microsecond}
	var items []*kvv1.BatchItem
	last := make(map[string]string)
	for i := range 400 {
		it := item(fmt.Sprintf("k%d", r.IntN(12)), fmt.Sprintf("v%d", i))
		if r.IntN(5) == 0 {
			it.IfGenerationMatch = proto.Uint64(uint64(i))
		}
		items = append(items, it)
		last[it.GetKey()] = string(it.GetValue())
	}
	writeAll(t, f, BatchConfig{MaxLines: 4, Concurrency: 4}, items)
	for k, v := range last {
		if f.values[k] != v {
			t.Errorf("%s = %q; want the last item's %q", k, f.values[k], v)
		}
	}
	if f.maxActive > 4 {
		t.Errorf("%d ops in flight at once; Concurrency is 4", f.maxActive)
	}
}

// TestBatcherBoundsInFlight holds every write and checks that the batcher
// stops at Concurrency ops in flight, and that add waits meanwhile.
func TestBatcherBoundsInFlight(t *testing.T) {
	f := &fakeKV{hold: make(chan struct{})}
	b := New(f, Config{Batch: BatchConfig{MaxLines: 1, Concurrency: 2}}).newBatcher(t.Context(), "store")
	added := make(chan int, 10)
	finished := make(chan error, 1)
	go func() {
		for i := range 6 {
			if err := b.add(item(fmt.Sprintf("k%d", i), "v")); err != nil {
				finished <- err
				return
			}
			added <- i
		}
		_, err := b.finish()
		finished <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.running() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("two writes never started")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a third to start, wrongly
	if n := f.running(); n != 2 {
		t.Errorf("%d writes in flight; Concurrency is 2", n)
	}
	if n := len(added); n > 2 {
		t.Errorf("add took %d items while the batcher was full; want it to wait", n)
	}
	close(f.hold)
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if f.maxActive != 2 || len(f.values) != 6 || len(f.clashes) > 0 {
		t.Errorf("max %d in flight, %d keys written, clashes %q; want 2, 6, none", f.maxActive, len(f.values), f.clashes)
	}
}

// TestBatcherItemFailures checks which single-PUT failures are the item's
// and which end the call.
func TestBatcherItemFailures(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		wantCode string // the item's failure code; "" when the call fails
	}{
		{"key exists", &upstream.StatusError{Op: upstream.OpPut, Status: 412, Precondition: upstream.PreconditionAbsent}, "already_exists"},
		{"too large", &upstream.StatusError{Op: upstream.OpPut, Status: 413}, "invalid_argument"},
		{"outcome unknown", &upstream.UnknownOutcomeError{Op: upstream.OpPut, Err: &upstream.StatusError{Status: 503}}, "unknown"},
		{"unauthorized", &upstream.StatusError{Op: upstream.OpPut, Status: 401}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeKV{putErr: c.err}
			b := New(f, Config{}).newBatcher(t.Context(), "store")
			err := b.add(&kvv1.BatchItem{Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD})
			res, ferr := b.finish()
			switch {
			case c.wantCode == "" && (err == nil && ferr == nil):
				t.Errorf("the call succeeded: %v", res)
			case c.wantCode != "" && (err != nil || ferr != nil):
				t.Errorf("the call failed: %v %v", err, ferr)
			case c.wantCode != "" && (len(res.GetFailures()) != 1 || res.GetFailures()[0].GetCode() != c.wantCode):
				t.Errorf("failures %v; want one %s", res.GetFailures(), c.wantCode)
			}
		})
	}
}

func TestBatcherInvalidItem(t *testing.T) {
	f := &fakeKV{}
	b := New(f, Config{}).newBatcher(t.Context(), "store")
	bad := &kvv1.BatchItem{Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD, IfGenerationMatch: proto.Uint64(1)}
	if err := b.add(bad); err != nil {
		t.Fatal(err)
	}
	res, err := b.finish()
	if err != nil {
		t.Fatal(err)
	}
	want := "invalid request: if_generation_match cannot be combined with PUT_MODE_ADD, which already requires the key to be absent"
	if len(res.GetFailures()) != 1 || res.GetFailures()[0].GetReason() != want || res.GetFailures()[0].GetCode() != "invalid_argument" {
		t.Errorf("failures %v; want one invalid_argument: %q", res.GetFailures(), want)
	}
	if len(f.ops) != 0 {
		t.Errorf("an invalid item was sent: %v", f.ops)
	}
}
