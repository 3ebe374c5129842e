package soak

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var flagCopyItems = flag.Int("soak.copy-items", 3_000, "items the CopyItems phase copies")

const (
	copySource = "soak-copy-src"
	copyTarget = "soak-copy-dst"
	// copyRounds bounds the calls of the copy phase: a call that fails
	// as a whole is resumed from its cursor.
	copyRounds = 200
)

// TestSoakCopyItems copies -soak.copy-items items (binary values and
// metadata, under a prefix, beside items outside it) from one store to
// another through the faults of -soak.faults, resuming from the cursor
// each time a call fails as a whole (a 429 stops every write for a
// moment, by design). Then, with the faults off, it compares the target
// with the source: every item the copy did not report failed is there
// with the source's value and metadata, nothing outside the prefix was
// copied, and every message's failures add up to its failed count.
func TestSoakCopyItems(t *testing.T) {
	n := *flagCopyItems
	faults, err := localstore.ParseFaults(*flagFaults)
	if err != nil {
		t.Fatalf("-soak.faults: %v", err)
	}
	logs := newLogCounter()
	st := startSoakStack(t, logs)
	ctx := t.Context()
	hc := kvtest.H2CClient()
	defer hc.CloseIdleConnections()
	client := st.NewClient(hc, connecthttp.WithGRPC())

	source := map[string][]byte{}
	var body []byte
	flush := func() {
		if res, err := st.Client.PutBatch(ctx, copySource, body); err != nil || len(res.LineErrors) > 0 {
			t.Fatalf("filling the source: %v %v", err, res)
		}
		body = body[:0]
	}
	for i := range n {
		key := fmt.Sprintf("in/%06d", i)
		value := bytes.Repeat([]byte{byte(i), 0xff, 0, byte(i >> 8)}, 1+i%64)
		source[key] = value
		body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: key, Value: value, Metadata: copyMetadata(key)})
		if (i+1)%1000 == 0 {
			flush()
		}
	}
	for _, key := range []string{"in", "out/1", "out/2"} {
		body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: key, Value: []byte("outside")})
	}
	flush()

	st.Store.SetFaults(faults)
	start := time.Now()
	failedKeys, stats := runCopy(ctx, t, client, n)
	st.Store.SetFaults(localstore.Faults{})
	t.Logf("copy: %v; %s", time.Since(start).Round(time.Millisecond), stats)
	checkLogs(t, logs)

	// The comparison, with the faults off, through the direct REST client.
	keys := listAll(ctx, t, st.Client, copyTarget)
	var missing, wrong, extra int
	for _, key := range keys {
		if _, ok := source[key]; !ok {
			extra++
			t.Errorf("the target holds %q, which is not under the prefix", key)
		}
	}
	present := map[string]bool{}
	for _, k := range keys {
		present[k] = true
	}
	for _, key := range slices.Sorted(maps.Keys(source)) {
		if !present[key] {
			if !failedKeys[key] {
				missing++
				if missing <= 5 {
					t.Errorf("%q is not in the target, and no failure reported it", key)
				}
			}
			continue
		}
		item, err := st.Client.GetItem(ctx, copyTarget, key)
		if err != nil || !bytes.Equal(item.Value, source[key]) || item.Metadata != copyMetadata(key) {
			wrong++
			if wrong <= 5 {
				t.Errorf("%q in the target differs from the source: %v", key, err)
			}
		}
	}
	t.Logf("verify: %d of %d items in the target, %d reported failed, %d missing unreported, %d wrong, %d extra",
		len(keys), n, len(failedKeys), missing, wrong, extra)
}

func copyMetadata(key string) string { return `{"from":"` + key + `"}` }

// copyStats counts what the copy phase saw.
type copyStats struct {
	calls, messages   int
	copied, failed    uint64
	endings           map[string]int
	failureCodes      map[string]int
	completedInRounds int
}

func (s copyStats) String() string {
	return fmt.Sprintf("%d calls, %d messages, %d copied, %d failed (codes %v); calls ended %v", s.calls, s.messages, s.copied, s.failed, s.failureCodes, s.endings)
}

// runCopy copies the prefix in/ until a call completes, resuming from the
// cursor after each failed call, and returns the keys reported failed.
func runCopy(ctx context.Context, t *testing.T, client kvv1connect.KVStoreServiceClient, n int) (map[string]bool, copyStats) {
	t.Helper()
	failedKeys := map[string]bool{}
	stats := copyStats{endings: map[string]int{}, failureCodes: map[string]int{}}
	cursor := ""
	for round := range copyRounds {
		stats.calls++
		var last *kvv1.CopyItemsResponse
		account := func(m *kvv1.CopyItemsResponse, seen uint64) uint64 {
			for _, f := range m.GetFailures() {
				failedKeys[f.GetKey()] = true
				stats.failureCodes[f.GetCode()]++
			}
			return seen + uint64(len(m.GetFailures()))
		}
		var seen uint64
		err := func() error {
			stream, err := client.CopyItems(ctx, &kvv1.CopyItemsRequest{SourceStoreId: copySource, TargetStoreId: copyTarget, Prefix: "in/", Cursor: cursor})
			if err != nil {
				return err
			}
			defer stream.Close()
			for {
				msg, err := stream.Receive()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				stats.messages++
				seen = account(msg, seen)
				if msg.GetFailed() != seen {
					t.Errorf("call %d: message says %d failed, but its messages reported %d failures", round, msg.GetFailed(), seen)
				}
				last = msg
			}
		}()
		if err == nil {
			stats.endings["ok"]++
			if last == nil || !last.GetDone() {
				t.Fatalf("call %d ended without its final message (last %v)", round, last)
			}
			stats.copied += last.GetCopied()
			stats.failed += last.GetFailed()
			stats.completedInRounds = round + 1
			if total := last.GetCopied() + last.GetFailed() + last.GetSkipped(); cursor == "" && total != uint64(n) {
				t.Errorf("a copy from the start accounted for %d items; want %d", total, n)
			}
			return failedKeys, stats
		}
		cerr, ok := errors.AsType[*connect.Error](err)
		if !ok {
			t.Fatalf("call %d: %v", round, err)
		}
		stats.endings[cerr.Code().String()]++
		var resume *kvv1.CopyItemsResponse
		for _, d := range cerr.Details() {
			if m, err := connectproto.UnmarshalErrorDetail(d); err == nil {
				if p, ok := m.(*kvv1.CopyItemsResponse); ok {
					resume = p
				}
			}
		}
		if resume == nil {
			t.Fatalf("call %d failed without a CopyItemsResponse detail: %v", round, err)
		}
		seen = account(resume, seen)
		if resume.GetFailed() != seen {
			t.Errorf("call %d: its error says %d failed, but it reported %d failures", round, resume.GetFailed(), seen)
		}
		stats.copied += resume.GetCopied()
		stats.failed += resume.GetFailed()
		cursor = resume.GetCursor()
		if cerr.Code() == connect.CodeResourceExhausted {
			time.Sleep(100 * time.Millisecond) // the write budget's reset is at most 2s away
		}
	}
	t.Fatalf("the copy did not complete in %d calls (%s)", copyRounds, stats)
	return nil, stats
}
