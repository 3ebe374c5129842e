package soak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/upstream"
)

// The upload: uploadWorkers concurrent BatchPutItems streams, each for its
// own contiguous share of the items, in messages of itemsPerMessage.
const (
	uploadWorkers   = 4
	itemsPerMessage = 100
	upPrefix        = "soak-up-"
	// maxRounds bounds how often a worker opens a new stream for the items
	// of its share that are not accounted for yet.
	maxRounds = 2000
	// streamTimeout bounds one BatchPutItems stream.
	streamTimeout = 5 * time.Minute
)

// Item i of the upload. Most are plain upserts, packed into batch PUTs;
// every 97th is a PUT_MODE_ADD (a single PUT that must not be replayed);
// every 1009th carries metadata kvgate must refuse (CR/LF), so it has to
// come back as an invalid_argument failure and never reach the store;
// every 200th follows a stale copy of itself (isDup).
func itemKey(i int) string { return fmt.Sprintf("%s%07d", upPrefix, i) }

func itemValue(i int) []byte {
	n := 24 + int(uint32(i)*2654435761%97)
	b := strconv.AppendInt(make([]byte, 0, n+8), int64(i), 10)
	b = append(b, ':')
	for len(b) < n {
		b = append(b, byte('a'+(i+len(b))%26))
	}
	return b
}

func itemMeta(i int) string {
	if isInvalid(i) {
		return "bad\nmetadata " + strconv.Itoa(i)
	}
	return "meta " + strconv.Itoa(i)
}

func isInvalid(i int) bool { return i%1009 == 500 }
func isAdd(i int) bool     { return i%97 == 13 && !isInvalid(i) }

// isDup reports a plain item that every stream carrying it also carries
// with a stale value right before it. A batch holds each key once, so the
// stale copy closes the open batch and the item starts the next, and the
// two batches are ready within microseconds of each other: the later must
// not overtake the earlier, whatever retries either needs.
func isDup(i int) bool { return i%200 == 7 && !isAdd(i) && !isInvalid(i) }

// A stream's entries are items, or (negative) the stale copies of items.
func staleEntry(i int) int        { return -i - 1 }
func entryItem(e int) (int, bool) { return max(e, -e-1), e < 0 }

func batchItem(e int) *kvv1.BatchItem {
	i, stale := entryItem(e)
	if stale {
		return &kvv1.BatchItem{Key: itemKey(i), Value: []byte("stale " + strconv.Itoa(i)), Metadata: "stale"}
	}
	it := &kvv1.BatchItem{Key: itemKey(i), Value: itemValue(i), Metadata: itemMeta(i)}
	if isAdd(i) {
		it.Mode = kvv1.PutMode_PUT_MODE_ADD
	}
	return it
}

// parseItemKey returns the index of an upload key.
func parseItemKey(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, upPrefix)
	if !ok || len(s) != 7 {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

// itemState is what the uploader knows of one item. Only the item's
// worker touches it while the upload runs.
type itemState struct {
	// written: a successful stream did not list it among its failures, or
	// a failed stream's BatchProgress listed it as written.
	written bool
	// exists: a PUT_MODE_ADD item reported already_exists after an
	// earlier attempt whose outcome was open; so that attempt wrote it.
	exists bool
	// rejected: reported invalid_argument (the invalid items).
	rejected bool
	// uncertain: kvgate received it in a stream that failed without
	// accounting for it, or reported its outcome unknown.
	uncertain bool
	// staleOpen: a stream that failed received the item's stale copy
	// without accounting for it. kvgate cancels the writes in flight when
	// a stream fails, and a cancelled batch PUT may still be applied by
	// the upstream after the stream has ended, even after a later stream
	// wrote the item: no ordering can hold against that.
	staleOpen bool
	attempts  int
}

func (s *itemState) acknowledged() bool { return s.written || s.exists }
func (s *itemState) done() bool         { return s.written || s.exists || s.rejected }

// uploader runs the upload and keeps its accounting.
type uploader struct {
	n      int
	client kvv1connect.KVStoreServiceClient
	p      *problems
	items  []itemState
	// attempted is set before an item is first sent, for the listing
	// checks of the unary callers, which run concurrently.
	attempted []atomic.Bool
	// figures: acknowledged, failed <code>, unaccounted, not received,
	// and the outcomes of the streams ("rpc <label>").
	stats  tally
	rounds []int
	left   []int
}

func newUploader(n int, client kvv1connect.KVStoreServiceClient, p *problems) *uploader {
	return &uploader{
		n: n, client: client, p: p,
		items: make([]itemState, n), attempted: make([]atomic.Bool, n),
		rounds: make([]int, uploadWorkers), left: make([]int, uploadWorkers),
	}
}

// run uploads the items with uploadWorkers streams at a time. A worker
// whose stream fails opens another for the items of its share not yet
// accounted for (written, already existing or rejected), as a client
// would: upserts are safe to send again. It waits as long as RetryInfo
// says (at most 3s) before it does.
func (u *uploader) run(ctx context.Context) {
	var g errgroup.Group
	for w := range uploadWorkers {
		lo, hi := w*u.n/uploadWorkers, (w+1)*u.n/uploadWorkers
		g.Go(func() error {
			pending := make([]int, 0, hi-lo)
			for i := lo; i < hi; i++ {
				pending = append(pending, i)
			}
			round := 0
			for ; len(pending) > 0 && round < maxRounds && ctx.Err() == nil; round++ {
				r := u.round(ctx, pending)
				kept := pending[:0]
				for _, i := range pending {
					if !u.items[i].done() {
						kept = append(kept, i)
					}
				}
				pending = kept
				if r.kind != outOK && len(pending) > 0 {
					wait := min(max(r.retry, 10*time.Millisecond), 3*time.Second)
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
				}
			}
			u.rounds[w], u.left[w] = round, len(pending)
			return nil
		})
	}
	_ = g.Wait()
}

// round sends pending on one stream, each isDup item right after a stale
// copy of it, and accounts for the outcome.
func (u *uploader) round(ctx context.Context, pending []int) result {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	entries := make([]int, 0, len(pending)+len(pending)/100)
	for _, i := range pending {
		if isDup(i) {
			entries = append(entries, staleEntry(i))
		}
		entries = append(entries, i)
	}
	for _, i := range pending {
		u.attempted[i].Store(true)
		u.items[i].attempts++
	}
	pending = entries
	stream, err := u.client.BatchPutItems(ctx)
	if err != nil {
		r := classify(err)
		u.p.add("upload stream not opened", "%v", err)
		return r
	}
	for off := 0; off < len(pending); off += itemsPerMessage {
		msg := &kvv1.BatchPutItemsRequest{StoreId: storeID}
		for _, i := range pending[off:min(off+itemsPerMessage, len(pending))] {
			msg.Items = append(msg.Items, batchItem(i))
		}
		if err := stream.Send(msg); err != nil {
			break // io.EOF when kvgate ended the call: its answer says why
		}
	}
	resp, err := stream.CloseAndReceive()
	r := classify(err)
	u.stats.add("rpc "+r.label(), 1)
	if r.kind == outOK {
		u.accountSuccess(pending, resp)
	} else {
		u.accountFailure(pending, r)
	}
	return r
}

// accountSuccess checks a successful stream's answer: written plus the
// failures is every item sent, and every item not among the failures is
// written.
func (u *uploader) accountSuccess(pending []int, resp *kvv1.BatchPutItemsResponse) {
	fails := resp.GetFailures()
	if got, want := resp.GetWritten()+uint64(len(fails)), uint64(len(pending)); got != want {
		u.p.add("batch accounting", "a successful stream of %d items answered written=%d and %d failures (sum %d)",
			len(pending), resp.GetWritten(), len(fails), got)
	}
	failed := u.checkFailures(pending, fails, uint64(len(pending)), nil)
	for pos, e := range pending {
		if !failed[pos] {
			u.markWritten(e)
		}
	}
}

// accountFailure checks a failed stream's error: a deliberate code with a
// BatchProgress whose written runs and failures lie within the items
// received; those neither written nor failed have an open outcome.
func (u *uploader) accountFailure(pending []int, r result) {
	if r.code != connect.CodeResourceExhausted && r.code != connect.CodeUnavailable {
		u.p.add("upload stream code", "a stream failed with %v (%s), want resource_exhausted or unavailable: %v", r.code, r.kind, r.err)
	}
	if r.code == connect.CodeResourceExhausted && r.retry <= 0 {
		u.p.add("no RetryInfo", "a stream failed with RESOURCE_EXHAUSTED without a RetryInfo, though every 429 here says when to retry: %v", r.err)
	}
	p := r.progress
	if p == nil {
		u.p.add("no BatchProgress", "a stream of %d items failed without a BatchProgress: %v", len(pending), r.err)
		for _, e := range pending {
			if i, stale := entryItem(e); stale {
				u.items[i].staleOpen = true
			} else {
				u.items[i].uncertain = true
			}
		}
		u.stats.add("unaccounted", int64(len(pending)))
		return
	}
	received := p.GetReceived()
	if received > uint64(len(pending)) {
		u.p.add("BatchProgress received", "received %d of a stream of %d items", received, len(pending))
		received = uint64(len(pending))
	}
	written := make([]bool, received)
	var prevEnd uint64
	for k, rg := range p.GetWritten() {
		if rg.GetStart() >= rg.GetEnd() || (k > 0 && rg.GetStart() <= prevEnd) || rg.GetEnd() > received {
			u.p.add("BatchProgress written", "run %d [%d, %d) is empty, out of order, touching the previous one or past received %d; all: %v",
				k, rg.GetStart(), rg.GetEnd(), received, p.GetWritten())
		}
		for x := rg.GetStart(); x < min(rg.GetEnd(), received); x++ {
			written[x] = true
		}
		prevEnd = rg.GetEnd()
	}
	failed := u.checkFailures(pending, p.GetFailures(), received, written)
	var unaccounted, notReceived int64
	for pos, e := range pending {
		i, stale := entryItem(e)
		switch {
		case uint64(pos) >= received:
			notReceived++
		case written[pos]:
			u.markWritten(e)
		case failed[pos]:
		case stale:
			u.items[i].staleOpen = true
			unaccounted++
		default:
			if isInvalid(i) {
				u.p.add("failure unreported", "invalid item %d (position %d of %d received) is not among the failures of a failed stream", i, pos, received)
			}
			u.items[i].uncertain = true
			unaccounted++
		}
	}
	u.stats.add("unaccounted", unaccounted)
	u.stats.add("not received", notReceived)
}

// checkFailures checks a stream's failures (ordered, unique, within limit,
// the right key, not also written, a code that fits the item) and records
// them; it returns which positions failed.
func (u *uploader) checkFailures(pending []int, fails []*kvv1.BatchFailure, limit uint64, written []bool) []bool {
	failed := make([]bool, len(pending))
	for k, f := range fails {
		idx := f.GetIndex()
		if idx >= limit || (k > 0 && idx <= fails[k-1].GetIndex()) {
			u.p.add("failure index", "failure %d has index %d: out of order, repeated, or past the %d items received", k, idx, limit)
			continue
		}
		e := pending[idx]
		i, _ := entryItem(e)
		if f.GetKey() != itemKey(i) {
			u.p.add("failure key", "failure at position %d names key %q, want %q", idx, f.GetKey(), itemKey(i))
		}
		if written != nil && written[idx] {
			u.p.add("failure also written", "item %d (position %d) is both written and failed (%s)", i, idx, f.GetCode())
		}
		failed[idx] = true
		u.markFailed(e, f)
	}
	// An invalid item neither failed nor written is reported by the
	// caller; one counted as written, by markWritten.
	return failed
}

func (u *uploader) markWritten(e int) {
	i, stale := entryItem(e)
	if stale {
		u.stats.add("stale copies acknowledged", 1)
		return
	}
	s := &u.items[i]
	if isInvalid(i) {
		u.p.add("failure unreported", "item %d with invalid metadata was not reported failed but counted written", i)
		return
	}
	s.written = true
	u.stats.add("acknowledged", 1)
}

func (u *uploader) markFailed(e int, f *kvv1.BatchFailure) {
	i, stale := entryItem(e)
	s := &u.items[i]
	code := f.GetCode()
	u.stats.add("failed "+code, 1)
	switch {
	case stale:
		u.p.add("failure code", "the stale copy of item %d, a plain upsert, failed with %s: %s", i, code, f.GetReason())
	case isInvalid(i):
		if code != connect.CodeInvalidArgument.String() {
			u.p.add("failure code", "invalid item %d failed with %s (%s), want invalid_argument", i, code, f.GetReason())
		}
		s.rejected = true
	case isAdd(i) && code == connect.CodeAlreadyExists.String():
		if !s.uncertain {
			u.p.add("add already_exists", "PUT_MODE_ADD item %d found its key taken, but no earlier attempt could have written it (attempt %d)", i, s.attempts)
		}
		s.exists = true
	case isAdd(i) && code == connect.CodeUnknown.String():
		s.uncertain = true
	default:
		u.p.add("failure code", "item %d (add=%v) failed with %s: %s", i, isAdd(i), code, f.GetReason())
		s.uncertain = true
	}
}

// verify reads every item back through kv (faults off) and compares it
// with the accounting: acknowledged items present with their value and
// metadata; items never received, and rejected ones, absent; items with an
// open outcome either. A listing of the upload prefix must show exactly
// the items present.
func (u *uploader) verify(ctx context.Context, kv *upstream.Client) (present int64, figures string) {
	var got tally
	presentAt := make([]bool, u.n)
	const readers = 8
	var g errgroup.Group
	for w := range readers {
		g.Go(func() error {
			for i := w; i < u.n; i += readers {
				s := &u.items[i]
				item, err := kv.GetItem(ctx, storeID, itemKey(i))
				absent := false
				if se, ok := errors.AsType[*upstream.StatusError](err); ok && se.Status == http.StatusNotFound {
					absent, err = true, nil
				}
				if err != nil {
					u.p.add("verify read", "reading item %d: %v", i, err)
					continue
				}
				exact := !absent && string(item.Value) == string(itemValue(i)) && item.Metadata == itemMeta(i)
				stale := !absent && isDup(i) && item.Metadata == "stale"
				presentAt[i] = !absent
				switch {
				case s.acknowledged() && stale && s.staleOpen:
					got.add("acknowledged, but a stale copy of an abandoned stream landed later", 1)
				case s.acknowledged() && stale:
					u.p.add("stale value won", "item %d holds the stale value %q that came right before it in every stream", i, item.Value)
				case !s.acknowledged() && stale && u.attempted[i].Load():
					got.add("not acknowledged, stale copy present", 1)
				case s.acknowledged() && absent:
					u.p.add("acknowledged item missing", "item %d (add=%v, attempts %d) was acknowledged but is not in the store", i, isAdd(i), s.attempts)
				case s.acknowledged() && !exact:
					u.p.add("acknowledged item wrong", "item %d: value %q metadata %q, want %q %q", i, item.Value, item.Metadata, itemValue(i), itemMeta(i))
				case s.acknowledged():
					got.add("acknowledged, present", 1)
				case isInvalid(i) && !absent:
					u.p.add("invalid item stored", "item %d with invalid metadata is in the store: %q %q", i, item.Value, item.Metadata)
				case isInvalid(i):
					got.add("invalid, absent", 1)
				case s.uncertain && absent:
					got.add("open outcome, absent", 1)
				case s.uncertain && !exact:
					u.p.add("open item wrong", "item %d (outcome open): value %q metadata %q, want %q %q", i, item.Value, item.Metadata, itemValue(i), itemMeta(i))
				case s.uncertain:
					got.add("open outcome, present", 1)
				case !absent:
					u.p.add("unsent item stored", "item %d was never received by kvgate but is in the store", i)
				default:
					got.add("never received, absent", 1)
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	for _, ok := range presentAt {
		if ok {
			present++
		}
	}

	// The listing must agree with the reads.
	var listed int64
	cursor, last := "", ""
	for {
		page, err := kv.ListKeys(ctx, storeID, upstream.ListOptions{Prefix: upPrefix, Cursor: cursor, Limit: 1000})
		if err != nil {
			u.p.add("verify list", "listing %s: %v", upPrefix, err)
			break
		}
		for _, k := range page.Keys {
			i, ok := parseItemKey(k)
			switch {
			case k <= last:
				u.p.add("verify list order", "key %q listed after %q", k, last)
			case !ok || i >= u.n:
				u.p.add("verify list stray", "listed key %q is no upload item", k)
			case !presentAt[i]:
				u.p.add("verify list stray", "listed key %q was not found by its read", k)
			}
			last = k
			listed++
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if listed != present {
		u.p.add("verify list count", "the listing of %s holds %d keys, the reads found %d items", upPrefix, listed, present)
	}
	return present, got.String()
}
