//go:build linux

package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
)

// The bounded-memory test's settings. kvgate is told to cut the stream
// into small batch PUTs and to keep few in flight, so what it holds at any
// moment is a handful of batches, not the stream.
const (
	memItemBytes        = 64 << 10 // one value
	memItemsPerMessage  = 16       // one BatchPutItems message: 1 MiB of values
	memBatchLines       = 100
	memBatchBytes       = 1 << 20
	memBatchConcurrency = 4

	// memGrowthBound is the most kvgate's peak RSS may rise above its
	// baseline during a stream of any length. With the settings above
	// kvgate holds about (concurrency + 1) batch bodies of 1 MiB, the
	// message being decoded (1 MiB, twice: wire bytes and values) and
	// HTTP/2 buffers, some 10 to 17 MiB of live heap, which GOGC=100 lets
	// grow to twice that before a collection: the growth measured is
	// about 35 MiB whatever the stream's length. 128 MiB is generous, and
	// still half the 256 MiB stream, so a kvgate that held on to the
	// stream could not pass.
	memGrowthBound = 128 << 20
	// memGrowthSlack is added to 1.5× the short stream's growth when
	// comparing the two streams: the garbage collector's timing makes a
	// few MiB of difference from run to run.
	memGrowthSlack = 16 << 20
)

// memRun is what one stream through a fresh kvgate measured, in bytes.
type memRun struct {
	streamed    int64 // value bytes sent
	items       int
	baseline    int64    // VmRSS after startup and a warm-up call
	peak        int64    // VmHWM after the stream: the process's peak RSS
	sampledPeak int64    // the highest VmRSS sampled during the stream
	quarters    [4]int64 // VmRSS after each quarter of the stream was sent
	elapsed     time.Duration
}

func (r memRun) growth() int64 { return r.peak - r.baseline }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestBatchPutItemsBoundedMemory streams 64 MiB and then 256 MiB of items
// through one BatchPutItems call each and shows from kvgate's peak RSS
// (VmHWM in /proc/<pid>/status) that its memory stays under a fixed bound
// that does not grow with the stream.
//
// The store is a separate kvlocal process writing to disk, so the stored
// items are neither in kvgate's memory nor in its RSS; kvgate reaches it
// through FASTLY_API_URL, as it would reach Fastly. Each stream gets a
// fresh kvgate, because VmHWM only ever rises. kvgate is built without
// -race (see TestMain), so its memory is what production sees.
func TestBatchPutItemsBoundedMemory(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	local := startKVLocal(t, t.TempDir())

	small := streamThroughKVGate(t, local.Addr, "memory-64mib", 64<<20)
	large := streamThroughKVGate(t, local.Addr, "memory-256mib", 256<<20)
	if t.Failed() {
		return
	}

	t.Logf("settings: -batch-lines %d -batch-bytes %d -batch-concurrency %d; %d KiB values, %d a message",
		memBatchLines, memBatchBytes, memBatchConcurrency, memItemBytes>>10, memItemsPerMessage)
	for _, r := range []memRun{small, large} {
		t.Logf("streamed %s (%d items) in %v: baseline RSS %s, peak RSS (VmHWM) %s, growth %s; "+
			"highest sampled RSS %s; RSS after each quarter sent %s, %s, %s, %s",
			mib(r.streamed), r.items, r.elapsed.Round(time.Millisecond),
			mib(r.baseline), mib(r.peak), mib(r.growth()), mib(r.sampledPeak),
			mib(r.quarters[0]), mib(r.quarters[1]), mib(r.quarters[2]), mib(r.quarters[3]))
	}

	if g := large.growth(); g > memGrowthBound {
		t.Errorf("streaming %s raised kvgate's peak RSS by %s over its %s baseline, want at most %s",
			mib(large.streamed), mib(g), mib(large.baseline), mib(memGrowthBound))
	}
	// Four times the data must not take much more memory than once.
	if limit := small.growth()*3/2 + memGrowthSlack; large.growth() > limit {
		t.Errorf("peak RSS growth for %s is %s, for %s %s: want at most 1.5× plus %s = %s; memory grows with the stream",
			mib(small.streamed), mib(small.growth()), mib(large.streamed), mib(large.growth()),
			mib(memGrowthSlack), mib(limit))
	}
}

// streamThroughKVGate starts a kvgate in front of the store at storeAddr,
// streams total bytes of values into store through one BatchPutItems
// call, checks that every item was written, and returns what kvgate's RSS
// did. kvgate is stopped before it returns.
func streamThroughKVGate(t *testing.T, storeAddr, store string, total int64) memRun {
	t.Helper()
	p := startKVGateWith(t,
		[]string{"FASTLY_API_TOKEN=test", "FASTLY_API_URL=http://" + storeAddr},
		"-batch-lines", strconv.Itoa(memBatchLines),
		"-batch-bytes", strconv.Itoa(memBatchBytes),
		"-batch-concurrency", strconv.Itoa(memBatchConcurrency),
	)
	defer p.Stop(t)
	conn := dial(t, p.Addr)
	defer conn.Close()
	kv := kvv1.NewKVStoreServiceClient(conn)
	ctx := testContext(t)
	pid := p.Pid()

	// A small call first, so the baseline includes the connections and
	// code paths every stream uses, but none of a stream's data.
	if resp, err := sendBatch(ctx, kv, &kvv1.BatchPutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{item("warm-up", "x")}}); err != nil || resp.GetWritten() != 1 {
		t.Fatalf("warm-up BatchPutItems = %v, %v; want 1 written", resp, err)
	}
	time.Sleep(100 * time.Millisecond) // let the warm-up's garbage settle
	run := memRun{streamed: total, items: int(total / memItemBytes)}
	run.baseline = procStatusBytes(t, pid, "VmRSS")

	// Sample VmRSS while the stream runs; VmHWM is the authority, the
	// samples show the curve.
	stopSampling := sampleRSS(ctx, pid, &run.sampledPeak)

	start := time.Now()
	stream, err := kv.BatchPutItems(ctx)
	if err != nil {
		t.Fatalf("BatchPutItems: %v", err)
	}
	sendErr := sendMemItems(t, stream, store, pid, &run)
	resp, err := stream.CloseAndRecv()
	run.elapsed = time.Since(start)
	stopSampling()
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		t.Fatalf("BatchPutItems Send: %v", sendErr)
	}
	if err != nil {
		t.Fatalf("BatchPutItems of %s: %v (sending: %v)", mib(total), err, sendErr)
	}
	run.peak = procStatusBytes(t, pid, "VmHWM")

	if resp.GetWritten() != uint64(run.items) || len(resp.GetFailures()) != 0 {
		t.Errorf("BatchPutItems of %d items: written %d, %d failures (first: %v); want all written",
			run.items, resp.GetWritten(), len(resp.GetFailures()), firstFailure(resp.GetFailures()))
	}
	checkMemStored(ctx, t, kv, store, run)
	return run
}

// sampleRSS samples pid's VmRSS every 20ms, keeping the highest in *peak,
// until the returned stop is called; stop waits for the last sample.
func sampleRSS(ctx context.Context, pid int, peak *int64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := readProcStatus(pid, "VmRSS"); err == nil {
				*peak = max(*peak, rss)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() {
		cancel()
		sampler.Wait()
	}
}

// sendMemItems sends run.items items of memItemBytes to store, recording
// kvgate's VmRSS after each quarter of them in run.quarters. It returns
// Send's error: io.EOF when kvgate ended the call early.
func sendMemItems(t *testing.T, stream kvv1.KVStoreService_BatchPutItemsClient, store string, pid int, run *memRun) error {
	t.Helper()
	// One buffer per item of a message, rewritten for each message: Send
	// has marshalled the message by the time it returns.
	bufs := make([][]byte, memItemsPerMessage)
	for i := range bufs {
		bufs[i] = make([]byte, memItemBytes)
	}
	messages := run.items / memItemsPerMessage
	for m := range messages {
		req := &kvv1.BatchPutItemsRequest{Items: make([]*kvv1.BatchItem, memItemsPerMessage)}
		if m == 0 {
			req.StoreId = store
		}
		for j := range memItemsPerMessage {
			index := m*memItemsPerMessage + j
			fillValue(bufs[j], index)
			req.Items[j] = &kvv1.BatchItem{Key: memKey(index), Value: bufs[j]}
		}
		if err := stream.Send(req); err != nil {
			return err
		}
		if quarter := messages / 4; (m+1)%quarter == 0 {
			run.quarters[(m+1)/quarter-1] = procStatusBytes(t, pid, "VmRSS")
		}
	}
	return nil
}

// checkMemStored checks that store holds what streamThroughKVGate sent:
// every key, and values byte for byte.
func checkMemStored(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string, run memRun) {
	t.Helper()
	keys := allKeys(collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store}))
	if len(keys) != run.items+1 { // and the warm-up item
		t.Errorf("the store holds %d keys after the stream, want %d", len(keys), run.items+1)
	}
	want := make([]byte, memItemBytes)
	for _, index := range []int{0, run.items / 2, run.items - 1} {
		fillValue(want, index)
		if got := mustGet(ctx, t, kv, store, memKey(index)).GetValue(); !bytes.Equal(got, want) {
			t.Errorf("item %d's value (%d bytes) differs from what was sent", index, len(got))
		}
	}
}

func memKey(index int) string { return fmt.Sprintf("item-%07d", index) }

// memPattern is random, so no layer can shrink the values by compressing.
var memPattern = func() []byte {
	b := make([]byte, memItemBytes)
	r := rand.NewChaCha8([32]byte{'k', 'v', 'g', 'a', 't', 'e'})
	_, _ = r.Read(b)
	return b
}()

// fillValue writes item index's value into b: the pattern, stamped with
// the index so that every value differs.
func fillValue(b []byte, index int) {
	copy(b, memPattern)
	copy(b, strconv.AppendInt(nil, int64(index), 10))
}

func firstFailure(fs []*kvv1.BatchFailure) *kvv1.BatchFailure {
	if len(fs) == 0 {
		return nil
	}
	return fs[0]
}

// procStatusBytes reads a "Vm..." line of /proc/<pid>/status, in bytes.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	t.Helper()
	n, err := readProcStatus(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readProcStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// For example "VmHWM:\t   23456 kB".
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(value), " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || unit != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: cannot read %s line %q", pid, field, sc.Text())
		}
		return n << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s line", pid, field)
}
