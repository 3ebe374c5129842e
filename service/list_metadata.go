package service

import (
	"context"
	"errors"
	"sync/atomic"

	"connectrpc.com/connect/v2"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/upstream"
)

// DefaultListMetadataConcurrency is how many HEADs a listing with
// include_metadata keeps in flight when Config.ListMetadataConcurrency is
// zero. Fastly does not count reads against its rate limit, so the bound
// is there for the connections and the upstream's sake: 32 keeps a page of
// 1000 keys to about 32 round trips, within the idle pool of kvgate's
// upstream client (upstream.DefaultMaxIdleConns), so the HEADs reuse
// connections instead of dialling.
const DefaultListMetadataConcurrency = 32

// itemReadError is the failure of a listed key's HEAD: the listing itself
// went well, so the failure is mapped as an item read's, never as a bad
// cursor.
type itemReadError struct {
	key string
	err error
}

func (e *itemReadError) Error() string {
	return "reading the metadata of " + e.key + ": " + e.err.Error()
}
func (e *itemReadError) Unwrap() error { return e.err }

// headKeys reads the items of keys with one HEAD each, at most
// s.listMetaConcurrency in flight, and returns the keys that still exist
// with their items, in the order of keys. A key that answers 404 was
// deleted after it was listed and is left out. Any other failure cancels
// the HEADs still in flight and is returned as an *itemReadError.
//
// When no key was left out, keys itself is returned, not a copy.
func (s *Service) headKeys(ctx context.Context, store string, keys []string) ([]string, []*kvv1.Item, error) {
	items := make([]*kvv1.Item, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	var next, gone atomic.Int64
	for range min(s.listMetaConcurrency, len(keys)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return nil
				}
				it, err := s.kv.HeadItem(gctx, store, keys[i])
				switch {
				case err == nil:
					items[i] = itemProto(keys[i], it, false)
				case upstream.KindOf(err) == upstream.KindNotFound:
					gone.Add(1)
				default:
					return &itemReadError{key: keys[i], err: err}
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	if gone.Load() == 0 {
		return keys, items, nil
	}
	n := len(keys) - int(gone.Load())
	live, liveItems := make([]string, 0, n), make([]*kvv1.Item, 0, n)
	for i, it := range items {
		if it != nil {
			live, liveItems = append(live, keys[i]), append(liveItems, it)
		}
	}
	return live, liveItems, nil
}

// listKeysWithMetadata is ListKeys with include_metadata: the page's keys
// with their items. A page whose keys were all deleted before their HEADs
// is passed over, as a page with no matching key is.
func (s *Service) listKeysWithMetadata(ctx context.Context, req *kvv1.ListKeysRequest, l *lister, from position) (*kvv1.ListKeysResponse, error) {
	pos := from
	for {
		pg, err := l.fetchNonEmpty(ctx, pos)
		if err != nil {
			if pos == from {
				return nil, s.words.listError(err, from)
			}
			return nil, s.words.fromUpstream(err, storeSubject) // a cursor Fastly gave
		}
		keys, items, err := s.headKeys(ctx, req.GetStoreId(), pg.keys)
		if err != nil {
			return nil, s.words.fromUpstream(err, itemSubject)
		}
		if len(keys) > 0 || pg.next.end {
			return &kvv1.ListKeysResponse{
				Keys:       keys,
				Items:      items,
				NextCursor: encodeCursor(req.GetStoreId(), req.GetPrefix(), pg.next),
			}, nil
		}
		pos = pg.next
	}
}

// itemPage is one StreamKeys message with include_metadata: the keys of a
// page that still existed when their HEADs answered, their items, and
// where the listing goes on after the keys considered.
type itemPage struct {
	keys  []string
	items []*kvv1.Item
	next  position
}

// streamKeysWithMetadata is StreamKeys with include_metadata, a pipeline
// of three: the lister fetches the next page's keys, describePages HEADs
// the keys of the page after the one being sent, and this goroutine sends.
// The HEADs of a page thus overlap the sending of the previous one, and
// at most two pages of items are held (the one being sent and the one
// being read) beside one page of keys.
func (s *Service) streamKeysWithMetadata(ctx context.Context, req *kvv1.StreamKeysRequest, l *lister, pos position, stream kvv1connect.KVStoreServiceStreamKeysServerStream) error {
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan keyPage)
	described := make(chan itemPage)
	produced, describeErr := make(chan error, 1), make(chan error, 1)
	maxKeys := req.GetMaxKeys()
	go func() { produced <- l.produce(ctx, pos, pages) }()
	go func() { describeErr <- s.describePages(ctx, req.GetStoreId(), maxKeys, pages, described) }()
	defer func() {
		// Stop both stages and wait until they have returned (each closes
		// its channel then): no HEAD or listing outlives the RPC.
		cancel()
		for range described {
		}
		for range pages {
		}
	}()

	var (
		delivered uint64
		resume    = req.GetCursor()
	)
	for ip := range described {
		cursor := encodeCursor(req.GetStoreId(), req.GetPrefix(), ip.next)
		if err := stream.Send(&kvv1.StreamKeysResponse{Keys: ip.keys, Items: ip.items, Cursor: cursor}); err != nil {
			return err
		}
		delivered += uint64(len(ip.keys))
		resume = cursor
		if maxKeys > 0 && delivered >= maxKeys {
			return nil
		}
	}
	var cerr *connect.Error
	err := <-describeErr
	if _, ok := errors.AsType[*itemReadError](err); ok {
		cerr = s.words.fromUpstream(err, itemSubject)
	} else {
		if err == nil {
			// describePages read pages to their end: the lister is done.
			err = <-produced
		}
		if err == nil {
			return nil
		}
		cerr = s.listFailure(err, pos, delivered)
	}
	return s.endStreamKeys(cerr, err, resume, delivered)
}

// describePages is the middle stage of StreamKeys with include_metadata:
// it reads each page's items and passes the page on out, where the sender
// takes it. Like the sender it counts the keys passed on, so that it reads
// no more than max_keys asks for. A page whose keys were all deleted is not
// passed on (the previous message's cursor resumes right), except for the
// end of a listing that has sent something, so that the stream's last
// cursor is the empty one. It closes out when it returns.
func (s *Service) describePages(ctx context.Context, store string, maxKeys uint64, pages <-chan keyPage, out chan<- itemPage) error {
	defer close(out)
	var passed uint64
	sent := false
	for pg := range pages {
		ip, err := s.describePage(ctx, store, pg, maxKeys, passed)
		if err != nil {
			return err
		}
		if len(ip.keys) == 0 && !(ip.next.end && sent) {
			continue
		}
		select {
		case out <- ip:
			sent = true
		case <-ctx.Done():
			return ctx.Err()
		}
		passed += uint64(len(ip.keys))
		if maxKeys > 0 && passed >= maxKeys {
			return nil
		}
	}
	return nil
}

// describePage reads the items of pg's keys, passed keys having been sent
// before it. When max_keys ends the stream inside the page, it reads only
// the keys still wanted (and more of the page in place of deleted ones),
// and the page's cursor resumes right after the last key it considered.
func (s *Service) describePage(ctx context.Context, store string, pg keyPage, maxKeys, passed uint64) (itemPage, error) {
	if maxKeys == 0 || uint64(len(pg.keys)) <= maxKeys-passed {
		keys, items, err := s.headKeys(ctx, store, pg.keys)
		return itemPage{keys: keys, items: items, next: pg.next}, err
	}
	want := int(maxKeys - passed) // fewer than the page holds, and at least one
	var ip itemPage
	done := 0
	for done < len(pg.keys) && len(ip.keys) < want {
		batch := pg.keys[done:min(len(pg.keys), done+want-len(ip.keys))]
		keys, items, err := s.headKeys(ctx, store, batch)
		if err != nil {
			return itemPage{}, err
		}
		ip.keys, ip.items = append(ip.keys, keys...), append(ip.items, items...)
		done += len(batch)
	}
	ip.next = pg.next
	if done < len(pg.keys) {
		ip.next = position{upstream: pg.from.upstream, after: pg.keys[done-1]}
	}
	return ip, nil
}
