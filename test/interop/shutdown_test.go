//go:build unix

package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvgate/kvgate/internal/testutil"
	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
)

// The graceful shutdown test's settings. The local store answers every
// request late, so that work is still in flight when SIGTERM arrives, and
// kvgate cuts uploads into small batch PUTs with few in flight.
const (
	drainShutdownTimeout = 4 * time.Second
	drainStoreLatency    = 30 * time.Millisecond
	drainSeedKeys        = 3000
	drainPageSize        = 10
	drainItemsPerMessage = 20
	// drainStreamTimeout only turns a stream kvgate never ends into a
	// failure; nothing asserts how quickly the streams end.
	drainStreamTimeout = 30 * time.Second
)

// drainFlags starts kvgate on dataDir with the settings above.
func drainFlags(dataDir string, latency time.Duration) []string {
	return []string{
		"-data", dataDir,
		"-store-latency", latency.String(),
		"-batch-lines", "50",
		"-batch-concurrency", "2",
		"-shutdown-timeout", drainShutdownTimeout.String(),
	}
}

func drainSeedKey(i int) string   { return fmt.Sprintf("seed/%05d", i) }
func drainUploadKey(i int) string { return fmt.Sprintf("up/%07d", i) }
func drainUploadValue(i int) string {
	return fmt.Sprintf("value of upload item %d", i)
}

// uploadOutcome is how the upload ended, seen from the client.
type uploadOutcome struct {
	sent  uint64 // items in messages whose Send succeeded
	resp  *kvv1.BatchPutItemsResponse
	err   error
	ended time.Time
}

// enumOutcome is how the enumeration ended, seen from the client.
type enumOutcome struct {
	pages []streamedPage
	err   error
	ended time.Time
}

// TestGracefulShutdown sends SIGTERM to kvgate while RPCs are in flight
// and checks that each ends the way the contract promises for a draining
// server: streams end with UNAVAILABLE and what a client needs to go on
// elsewhere (BatchProgress, StreamKeysResume), which a restarted kvgate on
// the same data then honours; unary RPCs finish normally.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()

	t.Run("Streams", func(t *testing.T) {
		t.Parallel()
		testShutdownStreams(t)
	})
	t.Run("IdleUpload", func(t *testing.T) {
		t.Parallel()
		testShutdownIdleUpload(t)
	})
	t.Run("ManyStreams", func(t *testing.T) {
		t.Parallel()
		testShutdownManyStreams(t)
	})
	t.Run("Unary", func(t *testing.T) {
		t.Parallel()
		testShutdownUnary(t)
	})
}

// testShutdownStreams sends SIGTERM while an upload and an enumeration are
// under way, checks how each ended, and then, against a kvgate restarted on
// the same data, that the upload's BatchProgress and the enumeration's
// StreamKeysResume tell the truth.
func testShutdownStreams(t *testing.T) {
	const listStore, uploadStore = "drain-list", "drain-upload"
	dataDir := t.TempDir()
	ctx := testContext(t)

	first := startKVGateWith(t, nil, drainFlags(dataDir, drainStoreLatency)...)
	conn := dial(t, first.Addr)
	kv := kvv1.NewKVStoreServiceClient(conn)
	seedDrainKeys(ctx, t, kv, listStore)

	// The streams get a context of their own that only bounds a hang.
	streamCtx, cancelStreams := context.WithTimeout(ctx, drainStreamTimeout+stopTimeout)
	defer cancelStreams()
	var (
		progress   drainProgress
		uploadDone = make(chan uploadOutcome, 1)
		enumDone   = make(chan enumOutcome, 1)
		wg         sync.WaitGroup
	)
	wg.Go(func() { uploadDone <- eagerUpload(streamCtx, kv, uploadStore, &progress) })
	wg.Go(func() {
		enumDone <- slowEnumeration(streamCtx, kv, listStore, func() { progress.recvMsgs.Add(1) })
	})
	waitUnderWay(t, &progress, uploadDone, enumDone)
	// And kvgate has written some of the upload, not just buffered it in
	// HTTP/2's flow-control windows.
	waitStored(ctx, t, kv, uploadStore, drainUploadKey(0))
	t.Logf("before SIGTERM: upload sent %d messages, its first item is stored; enumeration received %d messages",
		progress.sentMsgs.Load(), progress.recvMsgs.Load())

	// Stop sends SIGTERM and waits for kvgate to exit, checking it exits 0
	// and logs "shutdown finished" (and no errors).
	sigterm := time.Now()
	first.Stop(t)
	t.Logf("kvgate exited %v after SIGTERM (shutdown timeout %v)", time.Since(sigterm).Round(time.Millisecond), drainShutdownTimeout)

	var (
		up   uploadOutcome
		enum enumOutcome
	)
	deadline := time.After(drainStreamTimeout)
	for got := 0; got < 2; got++ {
		select {
		case up = <-uploadDone:
		case enum = <-enumDone:
		case <-deadline:
			t.Fatalf("the streams did not end within %v of SIGTERM", drainStreamTimeout)
		}
	}
	wg.Wait()
	_ = conn.Close()
	t.Logf("upload ended %v after SIGTERM (%d items sent): %v", up.ended.Sub(sigterm).Round(time.Millisecond), up.sent, up.err)
	t.Logf("enumeration ended %v after SIGTERM (%d messages received): %v", enum.ended.Sub(sigterm).Round(time.Millisecond), len(enum.pages), enum.err)

	written := checkUploadOutcome(t, up)
	resume, delivered := checkEnumOutcome(t, enum)
	t.Logf("enumeration StreamKeysResume: keys_delivered %d after %d messages", delivered, len(enum.pages))
	if t.Failed() {
		t.FailNow()
	}

	// A kvgate restarted on the same data, without the latency.
	second := startKVGateWith(t, nil, "-data", dataDir)
	kv = kvv1.NewKVStoreServiceClient(dial(t, second.Addr))
	checkUploadStored(ctx, t, kv, uploadStore, written)
	checkEnumResumes(ctx, t, kv, listStore, enum, resume, delivered)
}

// seedDrainKeys writes drainSeedKeys keys to store in one call, in reverse
// so that a listing's order is the store's own.
func seedDrainKeys(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string) {
	t.Helper()
	seed := make([]*kvv1.BatchItem, 0, drainSeedKeys)
	for i := drainSeedKeys - 1; i >= 0; i-- {
		seed = append(seed, item(drainSeedKey(i), "seed"))
	}
	start := time.Now()
	seeded, err := kv.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: store, Items: seed})
	if err != nil {
		t.Fatalf("PutItems of %d seed keys: %v", drainSeedKeys, err)
	}
	if seeded.GetWritten() != drainSeedKeys || len(seeded.GetFailures()) != 0 {
		t.Fatalf("PutItems of %d seed keys = %v, want all written", drainSeedKeys, seeded)
	}
	t.Logf("seeded %d keys in %v", drainSeedKeys, time.Since(start).Round(time.Millisecond))
}

// drainProgress counts how far the streams of testShutdownStreams got.
type drainProgress struct {
	sentMsgs, sentItems atomic.Uint64 // the upload's
	recvMsgs            atomic.Uint64 // the enumeration's
}

// drainUploadMessage is the upload's message whose first item is at
// position next; the first message names store.
func drainUploadMessage(store string, next int) *kvv1.BatchPutItemsRequest {
	msg := &kvv1.BatchPutItemsRequest{Items: make([]*kvv1.BatchItem, 0, drainItemsPerMessage)}
	if next == 0 {
		msg.StoreId = store
	}
	for i := next; i < next+drainItemsPerMessage; i++ {
		msg.Items = append(msg.Items, item(drainUploadKey(i), drainUploadValue(i)))
	}
	return msg
}

// eagerUpload sends to store as fast as kvgate reads, never closing its
// side, until kvgate ends the call.
func eagerUpload(ctx context.Context, kv kvv1.KVStoreServiceClient, store string, progress *drainProgress) (out uploadOutcome) {
	defer func() { out.ended = time.Now() }()
	stream, err := kv.BatchPutItems(ctx)
	if err != nil {
		out.err = err
		return out
	}
	for next := 0; ; next += drainItemsPerMessage {
		if err := stream.Send(drainUploadMessage(store, next)); err != nil {
			if !errors.Is(err, io.EOF) {
				// Not the server's answer (that comes with io.EOF) but
				// the stream's own failure.
				out.err = err
				return out
			}
			break
		}
		out.sent = progress.sentItems.Add(drainItemsPerMessage)
		progress.sentMsgs.Add(1)
	}
	out.resp, out.err = stream.CloseAndRecv()
	return out
}

// slowEnumeration streams store's keys a little slower than kvgate sends
// them, calling received after each message, until the stream ends.
func slowEnumeration(ctx context.Context, kv kvv1.KVStoreServiceClient, store string, received func()) (out enumOutcome) {
	defer func() { out.ended = time.Now() }()
	stream, err := kv.StreamKeys(ctx, &kvv1.StreamKeysRequest{StoreId: store, PageSize: drainPageSize})
	if err != nil {
		out.err = err
		return out
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			out.err = err // io.EOF when kvgate ended the stream cleanly
			return out
		}
		out.pages = append(out.pages, streamedPage{keys: resp.GetKeys(), cursor: resp.GetCursor()})
		received()
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUnderWay waits until both streams are clearly under way: the upload
// has sent a good number of messages, and the enumeration has delivered
// several pages. Either ending first fails the test.
func waitUnderWay(t *testing.T, progress *drainProgress, uploadDone <-chan uploadOutcome, enumDone <-chan enumOutcome) {
	t.Helper()
	const wantSentMsgs, wantRecvMsgs = 200, 10
	start := time.Now()
	for progress.sentMsgs.Load() < wantSentMsgs || progress.recvMsgs.Load() < wantRecvMsgs {
		select {
		case out := <-uploadDone:
			t.Fatalf("the upload ended before SIGTERM after %d items: %v, %v", out.sent, out.resp, out.err)
		case out := <-enumDone:
			t.Fatalf("the enumeration ended before SIGTERM after %d messages: %v", len(out.pages), out.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(start) > drainStreamTimeout {
			t.Fatalf("the streams did not get going within %v: %d messages sent, %d received",
				drainStreamTimeout, progress.sentMsgs.Load(), progress.recvMsgs.Load())
		}
	}
	t.Logf("the streams were under way after %v", time.Since(start).Round(time.Millisecond))
}

// checkEnumResumes checks, against a kvgate restarted on the enumerated
// store, that the keys the enumeration delivered are the listing's first
// ones and that its resume cursor continues right after them.
func checkEnumResumes(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string, enum enumOutcome, resume string, delivered int) {
	t.Helper()
	full := allKeys(collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 1000}))
	if len(full) != drainSeedKeys {
		t.Fatalf("after restart, the listing holds %d keys, want %d", len(full), drainSeedKeys)
	}
	if delivered < 1 || delivered >= len(full) {
		t.Fatalf("the enumeration delivered %d keys, want some but not all %d", delivered, len(full))
	}
	if diff := testutil.DiffKeys(allKeys(enum.pages), full[:delivered]); diff != "" {
		t.Errorf("the enumeration delivered keys that are not the listing's first %d: %s", delivered, diff)
	}
	pages := collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: drainPageSize, Cursor: resume})
	if diff := testutil.DiffKeys(allKeys(pages), full[delivered:]); diff != "" {
		t.Errorf("StreamKeys resumed from StreamKeysResume.cursor does not return the %d keys after the last delivered (%q): %s",
			len(full)-delivered, full[delivered-1], diff)
	}
	checkPages(t, "StreamKeys resumed after shutdown", pages, drainPageSize, true)
}

// checkUploadOutcome checks how the upload ended and returns the positions
// of the items kvgate reported written.
func checkUploadOutcome(t *testing.T, up uploadOutcome) []uint64 {
	t.Helper()
	if up.err == nil {
		// The upload never closes its side, so kvgate cannot have
		// finished it; a response must still account for every item.
		t.Errorf("the upload ended with a response %v, want UNAVAILABLE: it never closed its side", up.resp)
		if n := up.resp.GetWritten() + uint64(len(up.resp.GetFailures())); n != up.sent {
			t.Errorf("the upload's response accounts for %d items (%d written, %d failed), want the %d sent",
				n, up.resp.GetWritten(), len(up.resp.GetFailures()), up.sent)
		}
		return nil
	}
	st, ok := status.FromError(up.err)
	if !ok || st.Code() != codes.Unavailable {
		t.Errorf("the upload ended with %v, want code Unavailable with a BatchProgress", up.err)
		return nil
	}
	var progress *kvv1.BatchProgress
	for _, d := range st.Details() {
		if bp, ok := d.(*kvv1.BatchProgress); ok {
			if progress != nil {
				t.Errorf("the upload's error carries more than one BatchProgress: %v", st.Details())
			}
			progress = bp
		}
	}
	if progress == nil {
		t.Errorf("the upload's error %q (details %v) lacks a BatchProgress", st.Message(), st.Details())
		return nil
	}
	received := progress.GetReceived()
	t.Logf("upload BatchProgress: received %d, written %v, %d failures", received, rangesSummary(progress.GetWritten()), len(progress.GetFailures()))
	// kvgate reads whole messages: what it received is some of the
	// messages the client sent.
	if received > up.sent || received%drainItemsPerMessage != 0 {
		t.Errorf("BatchProgress.received = %d, want a multiple of %d (whole messages) of at most the %d items sent",
			received, drainItemsPerMessage, up.sent)
	}
	if received == 0 {
		t.Errorf("BatchProgress.received = 0, but the upload was under way")
	}
	var written []uint64
	var prevEnd uint64
	for i, r := range progress.GetWritten() {
		start, end := r.GetStart(), r.GetEnd()
		if start >= end || end > received || (i > 0 && start <= prevEnd) {
			t.Errorf("BatchProgress.written[%d] = [%d, %d), want ordered, non-empty, non-adjacent runs within [0, %d); all: %v",
				i, start, end, received, rangesSummary(progress.GetWritten()))
			continue
		}
		for j := start; j < end; j++ {
			written = append(written, j)
		}
		prevEnd = end
	}
	if len(written) == 0 {
		t.Errorf("BatchProgress.written is empty, but the upload was under way for a while")
	}
	// Every item is valid and the store is healthy: none may fail.
	for _, f := range progress.GetFailures() {
		t.Errorf("BatchProgress.failures holds index %d key %q: %s %s, want no failures", f.GetIndex(), f.GetKey(), f.GetCode(), f.GetReason())
	}
	return written
}

// checkEnumOutcome checks how the enumeration ended and returns its resume
// cursor and how many keys it delivered.
func checkEnumOutcome(t *testing.T, enum enumOutcome) (cursor string, delivered int) {
	t.Helper()
	got := allKeys(enum.pages)
	checkPages(t, "StreamKeys cut short by shutdown", enum.pages, drainPageSize, false)
	st, ok := status.FromError(enum.err)
	if enum.err == nil || !ok || st.Code() != codes.Unavailable {
		t.Errorf("the enumeration ended with %v after %d keys, want code Unavailable with a StreamKeysResume", enum.err, len(got))
		return "", len(got)
	}
	var resume *kvv1.StreamKeysResume
	for _, d := range st.Details() {
		if r, ok := d.(*kvv1.StreamKeysResume); ok {
			resume = r
		}
	}
	if resume == nil {
		t.Errorf("the enumeration's error %q (details %v) lacks a StreamKeysResume", st.Message(), st.Details())
		return "", len(got)
	}
	if resume.GetKeysDelivered() != uint64(len(got)) {
		t.Errorf("StreamKeysResume.keys_delivered = %d, want the %d keys received", resume.GetKeysDelivered(), len(got))
	}
	if len(enum.pages) == 0 {
		t.Errorf("the enumeration received nothing, but it was under way")
		return resume.GetCursor(), len(got)
	}
	if last := enum.pages[len(enum.pages)-1].cursor; resume.GetCursor() != last {
		t.Errorf("StreamKeysResume.cursor = %q, want the last message's cursor %q", resume.GetCursor(), last)
	}
	if resume.GetCursor() == "" {
		t.Errorf("StreamKeysResume.cursor is empty, but keys follow")
	}
	return resume.GetCursor(), len(got)
}

// waitStored waits until key is stored, polling with GetItem.
func waitStored(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store, key string) {
	t.Helper()
	start := time.Now()
	for {
		_, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
		if err == nil {
			return
		}
		if status.Code(err) != codes.NotFound {
			t.Fatalf("GetItem(%s/%s) while waiting for it to be stored: %v", store, key, err)
		}
		if time.Since(start) > drainStreamTimeout {
			t.Fatalf("%s/%s was not stored within %v", store, key, drainStreamTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkUploadStored checks, against a kvgate restarted on the upload's
// data, that exactly the items reported written are stored, with their
// values. Items received but not written were never sent (the writes in
// flight finish, so none has an unknown outcome here), and items kvgate
// never read cannot be stored.
func checkUploadStored(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string, written []uint64) {
	t.Helper()
	stored := allKeys(collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 1000}))
	var want []string
	for _, i := range written {
		want = append(want, drainUploadKey(int(i)))
	}
	slices.Sort(want) // keys are zero-padded, so this is index order anyway
	if diff := testutil.DiffKeys(stored, want); diff != "" {
		t.Errorf("after restart, store %s does not hold exactly the %d keys reported written: %s", store, len(want), diff)
	}
	checkValues(ctx, t, kv, store, written)
}

// checkValues reads the items at the upload positions indexes and checks
// their values, a few at a time.
func checkValues(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string, indexes []uint64) {
	t.Helper()
	var (
		next atomic.Int64
		bad  atomic.Int64
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				n := int(next.Add(1) - 1)
				if n >= len(indexes) {
					return
				}
				i := int(indexes[n])
				resp, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: drainUploadKey(i)})
				var got string
				if err == nil {
					got = string(resp.GetItem().GetValue())
				}
				if err != nil || got != drainUploadValue(i) {
					if bad.Add(1) <= 10 {
						t.Errorf("after restart, %s = %q, %v; want %q", drainUploadKey(i), got, err, drainUploadValue(i))
					}
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 10 {
		t.Errorf("... %d items wrong in all", n)
	}
}

func rangesSummary(rs []*kvv1.IndexRange) string {
	s := ""
	for i, r := range rs {
		if i == 8 {
			return s + fmt.Sprintf(" ... (%d runs)", len(rs))
		}
		s += fmt.Sprintf("[%d,%d)", r.GetStart(), r.GetEnd())
	}
	return s
}

// testShutdownUnary checks that a unary RPC in flight when SIGTERM arrives
// finishes normally: it needs less than the first half of the grace
// period, after which only the contexts of RPCs still running end.
//
// Whether the GetItem is still in flight when the signal goes out depends
// on wall-clock time, which a loaded machine can stretch; a run in which
// it ended first proves nothing, and is tried again with a fresh kvgate.
func testShutdownUnary(t *testing.T) {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		if shutdownDuringGetItem(t) || t.Failed() {
			return
		}
		if attempt == attempts {
			t.Fatalf("in %d attempts the GetItem never was still in flight when SIGTERM was sent", attempts)
		}
		t.Logf("attempt %d: the GetItem ended before SIGTERM was sent; trying again", attempt)
	}
}

// shutdownDuringGetItem sends SIGTERM to a fresh kvgate while a slow
// GetItem is in flight and checks that the GetItem succeeds. It reports
// false, having checked nothing, when the GetItem ended before the signal
// was sent.
func shutdownDuringGetItem(t *testing.T) (conclusive bool) {
	const store, key = "drain-unary", "slow"
	// The store takes this long to answer, so the GetItem is in flight
	// when SIGTERM follows shortly after it starts, and still ends well
	// within half of the shutdown timeout.
	const latency = time.Second
	ctx := testContext(t)
	p := startKVGateWith(t, nil, drainFlags(t.TempDir(), latency)...)
	conn := dial(t, p.Addr)
	defer conn.Close()
	kv := kvv1.NewKVStoreServiceClient(conn)
	// Also opens the connection, so the GetItem below starts at once.
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: []byte("patience")})

	type result struct {
		resp  *kvv1.GetItemResponse
		err   error
		ended time.Time
	}
	done := make(chan result, 1)
	started := time.Now()
	go func() {
		resp, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
		done <- result{resp, err, time.Now()}
	}()
	time.Sleep(latency * 2 / 5)
	sigterm := time.Now()
	p.Stop(t)
	t.Logf("kvgate exited %v after SIGTERM (shutdown timeout %v)", time.Since(sigterm).Round(time.Millisecond), drainShutdownTimeout)

	var r result
	select {
	case r = <-done:
	case <-time.After(drainStreamTimeout):
		t.Fatalf("GetItem did not end within %v of SIGTERM", drainStreamTimeout)
	}
	t.Logf("GetItem took %v and ended %v after SIGTERM: %v", r.ended.Sub(started).Round(time.Millisecond),
		r.ended.Sub(sigterm).Round(time.Millisecond), r.err)
	if r.err == nil && !r.ended.After(sigterm) {
		return false
	}
	if r.err != nil {
		t.Fatalf("GetItem in flight during SIGTERM: %v, want it to finish normally", r.err)
	}
	if got := string(r.resp.GetItem().GetValue()); got != "patience" {
		t.Errorf("GetItem in flight during SIGTERM = %q, want %q", got, "patience")
	}
	return true
}

// testShutdownIdleUpload checks an upload whose client has sent some items
// and then waits, its side still open, when SIGTERM arrives: kvgate is
// then blocked reading the stream, and must still stop reading and answer
// UNAVAILABLE with a BatchProgress, not leave the call to be cut off with
// the connection at the end of the grace period.
func testShutdownIdleUpload(t *testing.T) {
	const store = "drain-idle-upload"
	const messages = 3
	dataDir := t.TempDir()
	ctx := testContext(t)
	p := startKVGateWith(t, nil, drainFlags(dataDir, drainStoreLatency)...)
	conn := dial(t, p.Addr)
	kv := kvv1.NewKVStoreServiceClient(conn)

	streamCtx, cancel := context.WithTimeout(ctx, drainStreamTimeout+stopTimeout)
	defer cancel()
	stream, err := kv.BatchPutItems(streamCtx)
	if err != nil {
		t.Fatalf("BatchPutItems: %v", err)
	}
	var up uploadOutcome
	for m := range messages {
		if err := stream.Send(drainUploadMessage(store, int(up.sent))); err != nil {
			t.Fatalf("BatchPutItems: Send of message %d: %v", m, err)
		}
		up.sent += drainItemsPerMessage
	}
	done := make(chan uploadOutcome, 1)
	go func() {
		// RecvMsg waits for kvgate's answer without closing the client's
		// side: the stream stays open and idle.
		out := up
		resp := new(kvv1.BatchPutItemsResponse)
		if err := stream.RecvMsg(resp); err != nil {
			out.err = err
		} else {
			out.resp = resp
		}
		out.ended = time.Now()
		done <- out
	}()
	// Once the first item is stored, kvgate has read the third message: its
	// first item (position 50) filled the first batch PUT and sent it.
	// The rest of that message is read with it, so kvgate has read every
	// item sent, and now waits on the idle stream.
	waitStored(ctx, t, kv, store, drainUploadKey(0))
	select {
	case out := <-done:
		t.Fatalf("the idle upload ended before SIGTERM: %v, %v", out.resp, out.err)
	default:
	}

	sigterm := time.Now()
	p.Stop(t)
	t.Logf("kvgate exited %v after SIGTERM (shutdown timeout %v)", time.Since(sigterm).Round(time.Millisecond), drainShutdownTimeout)
	select {
	case up = <-done:
	case <-time.After(drainStreamTimeout):
		t.Fatalf("the idle upload did not end within %v of SIGTERM", drainStreamTimeout)
	}
	_ = conn.Close()
	t.Logf("idle upload ended %v after SIGTERM (%d items sent): %v", up.ended.Sub(sigterm).Round(time.Millisecond), up.sent, up.err)
	written := checkUploadOutcome(t, up)
	if st, _ := status.FromError(up.err); st != nil {
		for _, d := range st.Details() {
			if bp, ok := d.(*kvv1.BatchProgress); ok && bp.GetReceived() != up.sent {
				t.Errorf("BatchProgress.received = %d, want all %d items sent: kvgate had read them before SIGTERM", bp.GetReceived(), up.sent)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	second := startKVGateWith(t, nil, "-data", dataDir)
	checkUploadStored(ctx, t, kvv1.NewKVStoreServiceClient(dial(t, second.Addr)), store, written)
}

// testShutdownManyStreams ends many enumerations at once: when the grace
// period's first half is over, every stream's context ends together and
// each handler returns while kvgate is still acting on that context's end
// for the same request. Each stream must still end with UNAVAILABLE and a
// StreamKeysResume that matches what it delivered, and kvgate must exit 0.
func testShutdownManyStreams(t *testing.T) {
	const store = "drain-many"
	const streams = 200
	ctx := testContext(t)
	p := startKVGateWith(t, nil, drainFlags(t.TempDir(), drainStoreLatency)...)
	conn := dial(t, p.Addr)
	kv := kvv1.NewKVStoreServiceClient(conn)
	seedDrainKeys(ctx, t, kv, store)

	streamCtx, cancel := context.WithTimeout(ctx, drainStreamTimeout+stopTimeout)
	defer cancel()
	var (
		started sync.WaitGroup // each stream's first message
		wg      sync.WaitGroup
		outs    = make([]enumOutcome, streams)
	)
	started.Add(streams)
	for n := range streams {
		wg.Go(func() {
			var once sync.Once
			outs[n] = slowEnumeration(streamCtx, kv, store, func() { once.Do(started.Done) })
			once.Do(started.Done) // the stream ended without a message
		})
	}
	started.Wait()

	sigterm := time.Now()
	p.Stop(t)
	t.Logf("kvgate exited %v after SIGTERM (shutdown timeout %v)", time.Since(sigterm).Round(time.Millisecond), drainShutdownTimeout)
	ended := make(chan struct{})
	go func() {
		wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(drainStreamTimeout):
		t.Fatalf("the streams did not end within %v of SIGTERM", drainStreamTimeout)
	}
	var first, last time.Duration
	for n, out := range outs {
		d := out.ended.Sub(sigterm)
		if n == 0 || d < first {
			first = d
		}
		last = max(last, d)
		_, _ = checkEnumOutcome(t, out)
		if t.Failed() {
			t.FailNow() // one stream's failures are enough to read
		}
	}
	t.Logf("%d enumerations ended between %v and %v after SIGTERM", streams, first.Round(time.Millisecond), last.Round(time.Millisecond))
}
