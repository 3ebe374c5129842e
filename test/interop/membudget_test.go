//go:build linux

package interop

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
)

var memoryFull = flag.Bool("memory.full", false,
	"run TestMemoryBudgetRSS with the upstream slowed to 500ms, as the attack it guards against was (make soak-memory)")

// budgetLoad is one run of TestMemoryBudgetRSS.
type budgetLoad struct {
	budget         int64
	latency        time.Duration
	streams        int // concurrent BatchPutItems streams
	streamMessages int // messages a stream, one item each
	itemBytes      int
	puts           int // concurrent PutItem calls
	putBytes       int // each one's value, also the largest value
}

// budgetOverhead is what kvgate may use beside its memory budget: the Go
// runtime and code (some 20 MiB), HTTP/2 request bytes received but not
// yet read (at most 32 MiB per connection; the test uses two), and
// garbage the collector has not yet returned, which the Go memory limit
// kvgate sets (the budget plus 128 MiB) keeps in check.
const budgetOverhead = 192 << 20

func (l budgetLoad) String() string {
	return fmt.Sprintf("budget %s, upstream latency %v, %d streams × %d items of %s, %d PutItems of %s",
		mib(l.budget), l.latency, l.streams, l.streamMessages, mib(int64(l.itemBytes)), l.puts, mib(int64(l.putBytes)))
}

// TestMemoryBudgetRSS sends 200 concurrent BatchPutItems streams and 50
// concurrent large PutItem calls at once through a kvgate with a memory
// budget in front of a slow upstream (a kvlocal process), and checks
// from kvgate's peak RSS (VmHWM) that it stayed under the budget plus a
// fixed overhead, and that every item was written. make test slows the
// upstream to 200ms; make soak-memory to 500ms (-memory.full).
func TestMemoryBudgetRSS(t *testing.T) {
	t.Parallel()
	load := budgetLoad{budget: 256 << 20, latency: 200 * time.Millisecond,
		streams: 200, streamMessages: 4, itemBytes: 1 << 20, puts: 50, putBytes: 25 << 20}
	if *memoryFull {
		load.latency = 500 * time.Millisecond
	}
	// The store keeps its data in memory, in its own process.
	local := startProc(t, "kvlocal", kvlocalBin, localServingLine, nil,
		"-data", "", "-store-latency", load.latency.String(), "-max-value-bytes", strconv.Itoa(load.putBytes))
	p := startKVGateWith(t,
		[]string{"FASTLY_API_TOKEN=test", "FASTLY_API_URL=http://" + local.Addr},
		"-memory-budget", strconv.FormatInt(load.budget, 10),
		"-max-value-bytes", strconv.Itoa(load.putBytes),
		// This test measures memory, not stall detection (which has tests
		// of its own). On a loaded machine the race-instrumented client
		// here can leave a waiting upload unfed for longer than the 30 s
		// default, and the call would fail as stalled.
		"-body-stall-timeout", "5m",
	)
	defer p.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	pid := p.Pid()
	var sampled int64
	stopSampling := sampleRSS(ctx, pid, &sampled)

	start := time.Now()
	var g errgroup.Group
	streamConn, putConn := dial(t, p.Addr), dial(t, p.Addr)
	for s := range load.streams {
		g.Go(func() error { return budgetStream(ctx, kvv1.NewKVStoreServiceClient(streamConn), load, s) })
	}
	for i := range load.puts {
		g.Go(func() error {
			value := make([]byte, load.putBytes)
			fillValue(value, i)
			_, err := kvv1.NewKVStoreServiceClient(putConn).PutItem(ctx,
				&kvv1.PutItemRequest{StoreId: "budget-puts", Key: memKey(i), Value: value})
			if err != nil {
				return fmt.Errorf("PutItem %d: %w", i, err)
			}
			return nil
		})
	}
	err := g.Wait()
	stopSampling()
	peak := procStatusBytes(t, pid, "VmHWM")
	t.Logf("%v: done in %v; kvgate's peak RSS %s (highest sampled %s), bound %s",
		load, time.Since(start).Round(time.Millisecond), mib(peak), mib(sampled), mib(load.budget+budgetOverhead))
	if err != nil {
		t.Fatal(err)
	}
	if peak > load.budget+budgetOverhead {
		t.Errorf("kvgate's peak RSS %s exceeds its budget %s plus %s", mib(peak), mib(load.budget), mib(budgetOverhead))
	}
	// The values arrived whole.
	kv := kvv1.NewKVStoreServiceClient(putConn)
	want := make([]byte, load.putBytes)
	fillValue(want, load.puts-1)
	got, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "budget-puts", Key: memKey(load.puts - 1)},
		grpc.MaxCallRecvMsgSize(load.putBytes+1<<20))
	if err != nil || string(got.GetItem().GetValue()) != string(want) {
		t.Errorf("GetItem of the last PutItem: %v, value differs: %v", err, err == nil)
	}
}

// budgetStream sends one stream of load and checks every item was written.
func budgetStream(ctx context.Context, kv kvv1.KVStoreServiceClient, load budgetLoad, s int) error {
	store := fmt.Sprintf("budget-stream-%03d", s)
	msgs := make([]*kvv1.BatchPutItemsRequest, load.streamMessages)
	for m := range msgs {
		value := make([]byte, load.itemBytes)
		fillValue(value, s*load.streamMessages+m)
		msgs[m] = &kvv1.BatchPutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{{Key: memKey(m), Value: value}}}
	}
	resp, err := sendBatch(ctx, kv, msgs...)
	if err != nil {
		return fmt.Errorf("%s: %w", store, err)
	}
	if resp.GetWritten() != uint64(load.streamMessages) || len(resp.GetFailures()) != 0 {
		return fmt.Errorf("%s: written %d, failures %v; want all %d written", store, resp.GetWritten(), resp.GetFailures(), load.streamMessages)
	}
	return nil
}
