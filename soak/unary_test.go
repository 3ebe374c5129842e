package soak

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/upstream"
)

// The unary callers: each owns a few keys it overwrites, reads, lists and
// deletes, and a few it appends to, and calls kvgate for them one call at
// a time, so that what each key must hold is known at every step.
const (
	unaryCallers    = 8
	owKeysPerCaller = 8
	apKeysPerCaller = 4
	callTimeout     = 30 * time.Second
)

func owKeyName(c, k int) string { return fmt.Sprintf("soak-ow-c%02d-k%02d", c, k) }
func owPrefix(c int) string     { return fmt.Sprintf("soak-ow-c%02d-", c) }
func apKeyName(c, k int) string { return fmt.Sprintf("soak-ap-c%02d-k%02d", c, k) }

// owMeta is the metadata written with overwrite value v.
func owMeta(v string) string { return "md " + v }

// owKey is an overwrite key and the states it may be in: "" for absent,
// or a value. A call acknowledged OK leaves one state; a failed write
// adds its own (a replayed overwrite or delete may have been applied
// before its last attempt failed); a read narrows them to what it saw.
type owKey struct {
	key    string
	states map[string]bool
	// tainted: a call on it ended by deadline; it may still be applied,
	// so the key is no longer used or checked strictly.
	tainted bool
	writes  int
}

func (k *owKey) possible() string {
	var ss []string
	for _, s := range slices.Sorted(maps.Keys(k.states)) {
		if s == "" {
			s = "<absent>"
		}
		ss = append(ss, fmt.Sprintf("%q", s))
	}
	return strings.Join(ss, " or ")
}

func (k *owKey) mayExist() bool {
	for s := range k.states {
		if s != "" {
			return true
		}
	}
	return false
}

// appendCall is one append: its token and how the call ended.
type appendCall struct {
	token string
	res   result
}

// apKey is an append key and the appends made to it, in order.
type apKey struct {
	key   string
	calls []appendCall
}

// caller is one unary goroutine.
type caller struct {
	id     int
	client kvv1connect.KVStoreServiceClient
	rng    *rand.Rand
	ow     []*owKey
	ap     []*apKey
	seq    int
	up     *uploader
	cursor string // the walk over the upload's keys
	waited time.Duration
	// callStart is when the current call began; slowest is the longest
	// call so far, for the figures.
	callStart   time.Time
	inFlight    atomic.Int64 // callStart in Unix nanoseconds while a call runs, for the stall watch
	slowest     time.Duration
	slowestCall string
	slowestAt   time.Duration // since origin
	origin      time.Time     // when run began
	took        time.Duration
	stats       *tally // "<op> <outcome label>" per RPC
	p           *problems
}

func newCaller(id int, client kvv1connect.KVStoreServiceClient, up *uploader, stats *tally, p *problems) *caller {
	c := &caller{
		id: id, client: client, up: up, stats: stats, p: p,
		rng: rand.New(rand.NewPCG(uint64(id)+1, 0x50a4)),
	}
	for k := range owKeysPerCaller {
		c.ow = append(c.ow, &owKey{key: owKeyName(id, k), states: map[string]bool{"": true}})
	}
	for k := range apKeysPerCaller {
		c.ap = append(c.ap, &apKey{key: apKeyName(id, k)})
	}
	return c
}

// run makes about calls RPCs (a listing of several pages counts each).
func (c *caller) run(ctx context.Context, calls int) {
	c.origin = time.Now()
	defer func() { c.took = time.Since(c.origin) }()
	for n := 0; n < calls && ctx.Err() == nil; {
		k := c.ow[c.rng.IntN(len(c.ow))]
		switch r := c.rng.IntN(100); {
		case k.tainted || r >= 65:
			c.append(ctx, c.ap[c.rng.IntN(len(c.ap))])
			n++
		case r < 25:
			c.put(ctx, k)
			n++
		case r < 45:
			c.read(ctx, k)
			n++
		case r < 55:
			n += c.delete(ctx)
		case r < 60:
			n += c.listOwn(ctx)
		default:
			c.listUploads(ctx)
			n++
		}
	}
}

// outcome classifies err, counts it under op and checks it is OK or one
// of the definite codes the call may end with. Only appends may end with
// an unknown outcome: every other call here is retried until it is
// known.
func (c *caller) outcome(ctx context.Context, op string, err error, codes ...connect.Code) result {
	r := classify(err)
	c.stats.add(op+" "+r.label(), 1)
	c.inFlight.Store(0)
	if took := time.Since(c.callStart); took > c.slowest {
		c.slowest, c.slowestCall, c.slowestAt = took, op+" "+r.label(), c.callStart.Sub(c.origin)
	}
	if r.code == connect.CodeResourceExhausted {
		if r.retry <= 0 {
			c.p.add("no RetryInfo", "%s: RESOURCE_EXHAUSTED without a RetryInfo, though every 429 here says when to retry: %v", op, err)
		}
		// As a client should: wait as RetryInfo says before calling again.
		c.backoff(ctx, r.retry)
	}
	switch r.kind {
	case outForeign:
		c.p.add("foreign error", "%s: %v (code %v, ErrorInfo reason %q)", op, err, r.code, r.reason)
	case outUnknown:
		if op != "append" {
			c.p.add("unknown outcome", "%s, which kvgate retries safely, ended with OUTCOME_UNKNOWN: %v", op, err)
		}
	case outDefinite:
		if !slices.Contains(codes, r.code) {
			c.p.add("unexpected code", "%s: %v", op, err)
		}
	}
	return r
}

// maxBackoff caps the wait a RetryInfo asks for.
const maxBackoff = 3 * time.Second

func (c *caller) backoff(ctx context.Context, d time.Duration) {
	d = min(max(d, 10*time.Millisecond), maxBackoff)
	c.waited += d
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func (c *caller) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	c.callStart = time.Now()
	c.inFlight.Store(c.callStart.UnixNano())
	return context.WithTimeout(ctx, callTimeout)
}

func (c *caller) put(ctx context.Context, k *owKey) {
	c.seq++
	k.writes++
	v := fmt.Sprintf("ow c%02d #%d", c.id, c.seq)
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: storeID, Key: k.key, Value: []byte(v), Metadata: owMeta(v)})
	switch r := c.outcome(ctx, "put", err, connect.CodeResourceExhausted, connect.CodeUnavailable); r.kind {
	case outOK:
		k.states = map[string]bool{v: true}
	case outLate:
		k.tainted = true
	default:
		k.states[v] = true
	}
}

func (c *caller) get(ctx context.Context, k *owKey) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: storeID, Key: k.key})
	r := c.outcome(ctx, "get", err, connect.CodeNotFound, connect.CodeResourceExhausted, connect.CodeUnavailable)
	switch {
	case r.kind == outOK:
		v, md := string(resp.GetItem().GetValue()), resp.GetItem().GetMetadata()
		if v == "" || !k.states[v] {
			c.p.add("read wrong value", "GetItem(%s) = %q; it must be %s", k.key, v, k.possible())
		} else if md != owMeta(v) {
			c.p.add("read wrong metadata", "GetItem(%s) = %q with metadata %q, want %q", k.key, v, md, owMeta(v))
		}
		k.states = map[string]bool{v: true}
	case r.code == connect.CodeNotFound:
		if !k.states[""] {
			c.p.add("lost write", "GetItem(%s) = NOT_FOUND; it must be %s", k.key, k.possible())
		}
		k.states = map[string]bool{"": true}
	}
}

// delete deletes one of the caller's keys that may exist, or writes one
// when none does. It returns the number of RPCs made.
func (c *caller) delete(ctx context.Context) int {
	var cands []*owKey
	for _, k := range c.ow {
		if !k.tainted && k.mayExist() {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 {
		for _, k := range c.ow {
			if !k.tainted {
				c.put(ctx, k)
				return 1
			}
		}
		return 0
	}
	k := cands[c.rng.IntN(len(cands))]
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: storeID, Key: k.key})
	switch r := c.outcome(ctx, "delete", err, connect.CodeNotFound, connect.CodeResourceExhausted, connect.CodeUnavailable); {
	case r.kind == outOK:
		k.states = map[string]bool{"": true}
	case r.code == connect.CodeNotFound:
		if !k.states[""] {
			c.p.add("lost write", "DeleteItem(%s) = NOT_FOUND; it must be %s", k.key, k.possible())
		}
		k.states = map[string]bool{"": true}
	case r.kind == outLate:
		k.tainted = true
	default:
		k.states[""] = true
	}
	return 1
}

// listOwn lists the caller's overwrite keys page by page (small pages, so
// that cursors are followed) and checks the listing against what each key
// may hold: a key that must exist is listed, one that must be absent is
// not. It returns the number of RPCs made.
func (c *caller) listOwn(ctx context.Context) int {
	prefix := owPrefix(c.id)
	limit := uint32(1 + c.rng.IntN(owKeysPerCaller))
	var keys []string
	cursor, calls := "", 0
	for {
		calls++
		cctx, cancel := c.callCtx(ctx)
		resp, err := c.client.ListKeys(cctx, &kvv1.ListKeysRequest{StoreId: storeID, Prefix: prefix, Limit: limit, Cursor: cursor})
		cancel()
		if r := c.outcome(ctx, "list", err, connect.CodeResourceExhausted, connect.CodeUnavailable); r.kind != outOK {
			return calls // no conclusion from a partial listing
		}
		if n := len(resp.GetKeys()); n > int(limit) {
			c.p.add("list page size", "ListKeys(%s, limit %d) returned %d keys", prefix, limit, n)
		}
		keys = append(keys, resp.GetKeys()...)
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
		if calls > 4*owKeysPerCaller {
			c.p.add("list endless", "ListKeys(%s, limit %d) still has a next cursor after %d pages", prefix, limit, calls)
			return calls
		}
	}
	listed := make(map[string]bool, len(keys))
	for i, key := range keys {
		if i > 0 && key <= keys[i-1] {
			c.p.add("list order", "ListKeys(%s): %q after %q", prefix, key, keys[i-1])
		}
		listed[key] = true
	}
	own := make(map[string]bool, len(c.ow))
	for _, k := range c.ow {
		own[k.key] = true
		switch {
		case k.tainted:
		case listed[k.key]:
			if !k.mayExist() {
				c.p.add("list shows deleted key", "ListKeys(%s) lists %s; it must be absent", prefix, k.key)
			}
			delete(k.states, "")
			if len(k.states) == 0 {
				k.states[""] = true // keep the model usable after the error
			}
		default:
			if !k.states[""] {
				c.p.add("lost write", "ListKeys(%s) lacks %s; it must be %s", prefix, k.key, k.possible())
			}
			k.states = map[string]bool{"": true}
		}
	}
	for _, key := range keys {
		if !own[key] {
			c.p.add("list stray key", "ListKeys(%s) lists %q, which is not one of the caller's keys", prefix, key)
		}
	}
	return calls
}

// listUploads reads the next page of the upload's keys while it runs: in
// order, under the prefix, and only items that were sent and valid.
func (c *caller) listUploads(ctx context.Context) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	limit := uint32(1 + c.rng.IntN(200))
	resp, err := c.client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: storeID, Prefix: upPrefix, Limit: limit, Cursor: c.cursor})
	if r := c.outcome(ctx, "list", err, connect.CodeResourceExhausted, connect.CodeUnavailable); r.kind != outOK {
		return
	}
	keys := resp.GetKeys()
	if len(keys) > int(limit) {
		c.p.add("list page size", "ListKeys(%s, limit %d) returned %d keys", upPrefix, limit, len(keys))
	}
	for j, key := range keys {
		i, ok := parseItemKey(key)
		switch {
		case j > 0 && key <= keys[j-1]:
			c.p.add("list order", "ListKeys(%s): %q after %q", upPrefix, key, keys[j-1])
		case !ok || i >= c.up.n:
			c.p.add("list stray key", "ListKeys(%s) lists %q, which is no upload item", upPrefix, key)
		case isInvalid(i):
			c.p.add("invalid item stored", "ListKeys(%s) lists invalid item %d", upPrefix, i)
		case !c.up.attempted[i].Load():
			c.p.add("list stray key", "ListKeys(%s) lists item %d, which was never sent", upPrefix, i)
		}
	}
	c.cursor = resp.GetNextCursor()
}

func (c *caller) append(ctx context.Context, k *apKey) {
	c.seq++
	tok := fmt.Sprintf("c%02d-%d", c.id, c.seq)
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.client.PutItem(ctx, &kvv1.PutItemRequest{
		StoreId: storeID, Key: k.key, Value: []byte("|" + tok), Metadata: tok, Mode: kvv1.PutMode_PUT_MODE_APPEND,
	})
	r := c.outcome(ctx, "append", err, connect.CodeResourceExhausted, connect.CodeUnavailable)
	k.calls = append(k.calls, appendCall{token: tok, res: r})
}

// verify reads the caller's keys back through kv (faults off) and checks
// them against the calls' outcomes: an overwrite key holds one of the
// states its calls allow; an append key holds every token whose append
// was acknowledged exactly once, every token whose outcome was unknown at
// most once, no token whose append failed definitely, in the order they
// were appended, with the metadata of the last.
func (c *caller) verify(ctx context.Context, kv *upstream.Client, figures *tally) {
	for _, k := range c.ow {
		if k.tainted {
			figures.add("overwrite key tainted by a deadline", 1)
			continue
		}
		item, err := kv.GetItem(ctx, storeID, k.key)
		state := ""
		if se, ok := errors.AsType[*upstream.StatusError](err); ok && se.Status == http.StatusNotFound {
			err = nil
		} else if err == nil {
			state = string(item.Value)
			if item.Metadata != owMeta(state) {
				c.p.add("overwrite final metadata", "%s holds %q with metadata %q, want %q", k.key, state, item.Metadata, owMeta(state))
			}
		}
		if err != nil {
			c.p.add("verify read", "reading %s: %v", k.key, err)
			continue
		}
		switch {
		case !k.states[state]:
			c.p.add("overwrite final state", "%s holds %q; it must be %s", k.key, state, k.possible())
		case len(k.states) == 1 && state == "":
			figures.add("overwrite key absent as acknowledged", 1)
		case len(k.states) == 1:
			figures.add("overwrite key holds the last acknowledged value", 1)
		default:
			figures.add("overwrite key holds one of several possible values", 1)
		}
	}
	for _, k := range c.ap {
		item, err := kv.GetItem(ctx, storeID, k.key)
		var value, meta string
		if se, ok := errors.AsType[*upstream.StatusError](err); ok && se.Status == http.StatusNotFound {
			err = nil
		} else if err == nil {
			value, meta = string(item.Value), item.Metadata
		}
		if err != nil {
			c.p.add("verify read", "reading %s: %v", k.key, err)
			continue
		}
		c.checkAppends(k, value, meta, figures)
	}
}

func (c *caller) checkAppends(k *apKey, value, meta string, figures *tally) {
	var tokens []string
	if value != "" {
		rest, ok := strings.CutPrefix(value, "|")
		if !ok {
			c.p.add("append value", "%s holds %q, which is not a run of |tokens", k.key, value)
			return
		}
		tokens = strings.Split(rest, "|")
	}
	order := make(map[string]int, len(k.calls))
	for i, call := range k.calls {
		order[call.token] = i
	}
	count := make(map[string]int, len(tokens))
	last := -1
	for _, tok := range tokens {
		i, ok := order[tok]
		if !ok {
			c.p.add("append stray token", "%s holds token %q, which no append to it carried", k.key, tok)
			continue
		}
		count[tok]++
		if count[tok] == 2 {
			c.p.add("append applied twice", "%s holds token %q more than once (its call: %s): %q", k.key, tok, k.calls[i].res.label(), value)
		}
		if i < last {
			c.p.add("append order", "%s holds token %q after a later append's token: %q", k.key, tok, value)
		}
		last = max(last, i)
	}
	if len(tokens) > 0 && meta != tokens[len(tokens)-1] {
		c.p.add("append metadata", "%s has metadata %q, want that of its last append, %q", k.key, meta, tokens[len(tokens)-1])
	}
	for _, call := range k.calls {
		n := count[call.token]
		switch call.res.kind {
		case outOK:
			if n != 1 {
				c.p.add("acknowledged append", "%s holds the token %q of an acknowledged append %d times, want exactly once", k.key, call.token, n)
			}
			figures.add("append acknowledged, applied once", int64(min(n, 1)))
		case outDefinite:
			if n != 0 {
				c.p.add("failed append applied", "%s holds the token %q of an append that failed with %s (%v)", k.key, call.token, call.res.label(), call.res.err)
			}
			figures.add("append failed definitely, not applied", int64(1-min(n, 1)))
		default: // unknown, late, foreign: at most once
			if n > 0 {
				figures.add("append outcome open ("+call.res.label()+"), applied", 1)
			} else {
				figures.add("append outcome open ("+call.res.label()+"), not applied", 1)
			}
		}
	}
}
