package soak

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var flagGetItems = flag.Int("soak.getitems", 40, "GetItems calls the GetItems soak makes")

// The GetItems soak's keys: giPresent items written before the faults
// start, and giAbsent keys never written. Nothing writes during the
// soak, so every answer can be checked exactly.
const (
	giPresent = 600
	giAbsent  = 200
	giCallers = 4
	giMaxKeys = 300
)

func giKey(i int) string { return fmt.Sprintf("soak-gi-%04d", i) }

// giValue is item i's value: binary, of sizes from a byte to 12 KiB.
func giValue(i int) []byte {
	v := make([]byte, 1+(i*37)%(12<<10))
	for j := range v {
		v[j] = byte(i*7 + j*13)
	}
	return v
}

func giMeta(i int) string { return fmt.Sprintf("gi %d", i) }

// TestSoakGetItems makes -soak.getitems GetItems calls from several
// callers at once, each naming up to 300 keys (present, absent and
// repeated) in the full or the metadata view, while the local store
// answers one request in ten with 429, 500 or 503 and drops about one
// connection in a hundred: kvgate's retries of the reads carry the calls
// through. Every position must be answered exactly once; an item must be
// what the store holds, and absent only a key it does not; a key's error
// must be a code the failure of a read may give. Then the stack shuts down
// and its goroutines must be gone.
func TestSoakGetItems(t *testing.T) {
	faults, logs := beginPhase(t)
	st := startSoakStack(t, logs)
	ctx := t.Context()
	var body []byte
	for i := range giPresent {
		body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: giKey(i), Value: giValue(i), Metadata: giMeta(i)})
	}
	if res, err := st.Client.PutBatch(ctx, storeID, body); err != nil || len(res.LineErrors) > 0 {
		t.Fatalf("seeding: %v %v", err, res)
	}

	hc := kvtest.H2CClient()
	defer hc.CloseIdleConnections()
	client := st.NewClient(hc, connecthttp.WithGRPC())
	p := &problems{t: t}
	var stats tally
	before := st.Requests()
	st.Store.SetFaults(faults)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range giCallers {
		calls := *flagGetItems / giCallers
		if c < *flagGetItems%giCallers {
			calls++
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c)+1, 0x6e7))
			for range calls {
				if ctx.Err() != nil {
					return
				}
				giCall(ctx, client, rng, &stats, p)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	st.Store.SetFaults(localstore.Faults{})

	injected := st.Store.InjectedFaults()
	t.Logf("GetItems soak: %d calls in %v; %d upstream requests (GET %d, HEAD %d in all); injected 429=%d 503=%d 500=%d dropped=%d dropped-mid-body=%d",
		*flagGetItems, took.Round(time.Millisecond), st.Requests()-before, st.Store.Count(localstore.RequestGet), st.Store.Count(localstore.RequestHead),
		injected.RateLimited, injected.Unavailable, injected.ServerError,
		injected.DroppedBeforeHandling+injected.DroppedBeforeResponse, injected.DroppedMidBody)
	t.Logf("answers: %s", stats.String())
	checkLogs(t, logs)
	t.Logf("problems: %s", p.summary())
	if err := st.Shutdown(); err != nil {
		t.Errorf("kvgate shutdown: %v", err)
	}
}

// giKeyErrorCodes are the codes a key's read may fail with once kvgate's
// retries are spent: the store stayed unavailable, or kept answering 429.
var giKeyErrorCodes = map[string]bool{
	connect.CodeUnavailable.String():       true,
	connect.CodeResourceExhausted.String(): true,
}

// giCall makes one GetItems call of random keys and view and checks every
// answer against what the store holds.
func giCall(ctx context.Context, client kvv1connect.KVStoreServiceClient, rng *rand.Rand, stats *tally, p *problems) {
	n := 1 + rng.IntN(giMaxKeys)
	keys := make([]string, n)
	index := make([]int, n) // item number, or -1 for an absent key
	for i := range keys {
		if i > 0 && rng.IntN(10) == 0 { // a repeat of an earlier position
			j := rng.IntN(i)
			keys[i], index[i] = keys[j], index[j]
			continue
		}
		k := rng.IntN(giPresent + giAbsent)
		keys[i], index[i] = giKey(k), k
		if k >= giPresent {
			index[i] = -1
		}
	}
	view := kvv1.ItemView_ITEM_VIEW_FULL
	if rng.IntN(4) == 0 {
		view = kvv1.ItemView_ITEM_VIEW_METADATA
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	stream, err := client.GetItems(cctx, &kvv1.GetItemsRequest{StoreId: storeID, Keys: keys, View: view})
	if err != nil {
		p.add("call failed", "GetItems of %d keys: %v", n, err)
		return
	}
	defer stream.Close()
	answered := make([]bool, n)
	for {
		m, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			stats.add("call ok", 1)
			break
		}
		if err != nil {
			stats.add("call "+classify(err).label(), 1)
			p.add("call failed", "GetItems of %d keys ended with %v", n, err)
			break
		}
		i := int(m.GetIndex())
		if i >= n || answered[i] || m.GetKey() != keys[i] {
			p.add("bad position", "message %v for a call of %d keys (answered already: %v)", m, n, i < n && answered[i])
			continue
		}
		answered[i] = true
		giCheck(view, keys[i], index[i], m, stats, p)
	}
	for i, ok := range answered {
		if !ok {
			p.add("unanswered", "position %d (%q) of %d got no answer", i, keys[i], n)
		}
	}
}

// giCheck checks the answer m for key, item number k (-1: absent).
func giCheck(view kvv1.ItemView, key string, k int, m *kvv1.GetItemsResponse, stats *tally, p *problems) {
	switch r := m.GetResult().(type) {
	case *kvv1.GetItemsResponse_Absent:
		stats.add("absent", 1)
		if k >= 0 {
			p.add("absent but exists", "%s reported absent", key)
		}
	case *kvv1.GetItemsResponse_Item:
		stats.add("item "+view.String(), 1)
		if k < 0 {
			p.add("found but absent", "%s reported found, though never written", key)
			return
		}
		it, want := r.Item, giValue(k)
		wantValue := want
		if view == kvv1.ItemView_ITEM_VIEW_METADATA {
			wantValue = nil
		}
		if it.GetKey() != key || !bytes.Equal(it.GetValue(), wantValue) || it.GetMetadata() != giMeta(k) ||
			it.GetGeneration() == 0 || it.GetSize() != uint64(len(want)) {
			p.add("wrong item", "%s: key %q, %d value bytes (want %d), metadata %q, generation %d, size %d (want %d)",
				key, it.GetKey(), len(it.GetValue()), len(wantValue), it.GetMetadata(), it.GetGeneration(), it.GetSize(), len(want))
		}
	case *kvv1.GetItemsResponse_Error:
		stats.add("key error "+r.Error.GetCode(), 1)
		if !giKeyErrorCodes[r.Error.GetCode()] {
			p.add("unexpected key error", "%s: %v", key, r.Error)
		}
	default:
		p.add("no result", "%s: message %v has no result", key, m)
	}
}
