package service

import (
	"context"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/upstream"
)

// DefaultDeleteConcurrency is how many DELETEs one DeleteKeys call keeps in
// flight by default. Every DELETE spends one request of Fastly's hourly
// budget (1,000 by default), so more in flight does not delete more per
// hour: at 100 to 200ms per DELETE, 8 in flight delete 40 to 80 keys a
// second, which spends a 1,000/h budget in well under a minute already,
// and reaches Fastly's 429s (seen with as few as 2 to 10 parallel writers)
// later than Fastly's CLI does with 100. Raise it for a raised limit.
const DefaultDeleteConcurrency = 8

// MaxDeleteKeys is the most keys one DeleteKeys call may list.
const MaxDeleteKeys = 10_000

// DeleteKeys deletes the keys under a prefix, a list of keys or every key
// of a store: one DELETE per key, deleteConcurrency at a time, reported in
// order (the listing's, or the list's) so that each message's cursor
// resumes right after the keys it reports. See deletion for how a call
// ends early.
func (s *Service) DeleteKeys(ctx context.Context, req *kvv1.DeleteKeysRequest, stream kvv1connect.KVStoreServiceDeleteKeysServerStream) error {
	sel, cerr := checkDeleteKeys(req)
	if cerr != nil {
		return cerr
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &deletion{
		s: s, ctx: ctx, cancel: cancel, req: req, sel: sel, stream: stream,
		results:  make(chan deleteResult, s.deleteConcurrency),
		lastSent: time.Now(),
		cursor:   req.GetCursor(),
	}
	if sel.keys != nil {
		d.src = &listSource{keys: sel.keys, at: sel.from.index}
	} else {
		l := s.newLister(req.GetStoreId(), sel.prefix, MaxListLimit, kvv1.Consistency_CONSISTENCY_STRONG)
		src := &listingSource{pages: make(chan keyPage), produced: make(chan error, 1), from: sel.from.pos}
		go func() { src.produced <- l.produce(ctx, sel.from.pos, src.pages) }()
		defer func() {
			// Stop the producer and wait for it: no upstream work outlives
			// the RPC.
			cancel()
			for range src.pages {
			}
		}()
		d.src = src
	}
	return d.run()
}

// deleteSelection is a checked DeleteKeysRequest: the keys it names and
// where its cursor resumes.
type deleteSelection struct {
	// keys is the list to delete; nil for a prefix or all keys.
	keys   []string
	prefix string
	dryRun bool
	scope  string
	from   deletePosition
}

// deletePosition is where a deletion resumes: an index into the list, or
// a place in the listing.
type deletePosition struct {
	index uint64
	pos   position
}

// checkDeleteKeys checks a DeleteKeys request and returns what it selects.
func checkDeleteKeys(req *kvv1.DeleteKeysRequest) (deleteSelection, *connect.Error) {
	var v violations
	v.checkStoreID(req.GetStoreId())
	prefix, keys, all := req.GetPrefix(), req.GetKeys(), req.GetAllKeys()
	switch {
	case prefix == "" && len(keys) == 0 && !all:
		v.Add("prefix", "set one of prefix (not empty), keys and all_keys")
	case prefix != "" && len(keys) > 0:
		v.Add("keys", "keys cannot be combined with prefix; set one of prefix, keys and all_keys")
	case all && (prefix != "" || len(keys) > 0):
		v.Add("all_keys", "all_keys cannot be combined with prefix or keys; set one of prefix, keys and all_keys")
	}
	if prefix != "" {
		v.Check("prefix", upstream.CheckKeyPrefix(prefix))
	}
	if len(keys) > MaxDeleteKeys {
		v.Add("keys", "keys holds %d keys; the most is %d (use prefix or all_keys for more)", len(keys), MaxDeleteKeys)
	} else {
		v.checkKeyList("keys", keys, true)
	}
	sel := deleteSelection{prefix: prefix, dryRun: req.GetDryRun()}
	if len(keys) > 0 {
		sel.keys = keys
	}
	sel.scope = deleteScope(req.GetStoreId(), prefix, keys, all, sel.dryRun)
	from, err := decodeDeleteCursor(req.GetCursor(), sel.scope, len(sel.keys))
	v.Check("cursor", err)
	sel.from = from
	return sel, v.Err()
}
