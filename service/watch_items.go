package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/upstream"
)

// The WatchItems defaults and limits.
const (
	// DefaultWatchMinInterval is the poll interval floor when
	// WatchConfig.MinInterval is zero.
	DefaultWatchMinInterval = time.Second
	// DefaultWatchMaxKeys is the most keys a prefix watch may cover when
	// WatchConfig.MaxKeys is zero.
	DefaultWatchMaxKeys = 10_000
	// DefaultWatchConcurrency is the most HEADs one poller keeps in flight
	// when WatchConfig.Concurrency is zero.
	DefaultWatchConcurrency = 16
	// MaxWatchKeys is the most keys one WatchItems request may name.
	MaxWatchKeys = 1000
)

// maxWatchMessageBytes bounds one WatchItems message: a poll's changes
// that would not fit are sent in several messages, each within the 4 MiB
// gRPC clients receive by default.
const maxWatchMessageBytes = 4<<20 - 64<<10

// WatchConfig configures WatchItems.
type WatchConfig struct {
	// MinInterval is the floor of every watch's poll interval: a watch
	// asking for less, or for nothing, is polled this often, and no key is
	// polled more often whatever its watchers ask; DefaultWatchMinInterval
	// when zero.
	MinInterval time.Duration
	// MaxKeys is the most keys a prefix watch may cover; a poll that lists
	// more ends its watches with FAILED_PRECONDITION. DefaultWatchMaxKeys
	// when zero.
	MaxKeys int
	// Concurrency is the most HEADs one poller keeps in flight;
	// DefaultWatchConcurrency when zero.
	Concurrency int
}

func (c WatchConfig) withDefaults() WatchConfig {
	if c.MinInterval <= 0 {
		c.MinInterval = DefaultWatchMinInterval
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultWatchMaxKeys
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultWatchConcurrency
	}
	return c
}

// reasonWatchTooManyKeys is the ErrorInfo reason of a prefix watch that
// covers more keys than kvgate watches.
const reasonWatchTooManyKeys = "WATCH_TOO_MANY_KEYS"

// WatchItems streams the changes of a set of keys or of a prefix, found by
// polling: see watchHub for the pollers, and watcher for what each stream
// is sent. The stream ends without an error when kvgate shuts down, and
// with the mapped error when a poll fails for good (the token refused, the
// store gone in prefix mode, too many keys under the prefix). Polls that
// fail for a while (rate limits, 5xx, dropped connections, already retried
// by the upstream client) report nothing and the watch goes on.
func (s *Service) WatchItems(ctx context.Context, req *kvv1.WatchItemsRequest, stream kvv1connect.KVStoreServiceWatchItemsServerStream) error {
	return s.watchItems(ctx, req, stream.Send)
}

// watchItems is WatchItems with the stream's Send.
func (s *Service) watchItems(ctx context.Context, req *kvv1.WatchItemsRequest, send func(*kvv1.WatchItemsResponse) error) error {
	spec, cerr := s.checkWatch(req)
	if cerr != nil {
		return cerr
	}
	if s.draining.Load() {
		return nil
	}
	w := newWatcher(spec)
	p := s.watch.join(ctx, spec, w)
	defer s.watch.leave(p, w)
	for {
		if msg := w.take(); msg != nil {
			for _, part := range splitWatchMessage(msg, maxWatchMessageBytes) {
				if err := send(part); err != nil {
					if s.draining.Load() {
						return nil
					}
					return err
				}
			}
			continue
		}
		select {
		case <-w.dirty:
		case <-w.failed:
			return w.failure()
		case <-s.watch.drained:
			return nil
		case <-ctx.Done():
			if s.draining.Load() {
				return nil
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return connect.NewError(connect.CodeDeadlineExceeded,
					"the watch reached its deadline; watch again with known set to resume").WithCause(ctx.Err())
			}
			return connect.NewError(connect.CodeCanceled, "request canceled").WithCause(ctx.Err())
		}
	}
}

// watchSpec is a valid WatchItems request.
type watchSpec struct {
	store string
	// keys are the watched keys, sorted and distinct; nil for a prefix
	// watch.
	keys   []string
	prefix string
	// interval is the caller's, raised to the floor.
	interval     time.Duration
	initialState bool
	// known is the caller's state of the watched keys: key to generation.
	known map[string]uint64
}

func (w *watchSpec) prefixMode() bool { return w.keys == nil }

// watches reports whether key is one the spec watches.
func (w *watchSpec) watches(key string) bool {
	if w.prefixMode() {
		return strings.HasPrefix(key, w.prefix)
	}
	_, found := slices.BinarySearch(w.keys, key)
	return found
}

// checkWatch validates a WatchItems request. Known entries for keys the
// request does not watch are dropped: they cannot differ from anything
// the watch reports.
func (s *Service) checkWatch(req *kvv1.WatchItemsRequest) (*watchSpec, *connect.Error) {
	var v violations
	v.checkStoreID(req.GetStoreId())
	keys, prefix := req.GetKeys(), req.GetPrefix()
	switch {
	case len(keys) > 0 && prefix != "":
		v.Add("prefix", "prefix cannot be combined with keys: watch a list of keys or a prefix, not both")
	case len(keys) > MaxWatchKeys:
		v.Add("keys", "keys holds %d keys; the most is %d", len(keys), MaxWatchKeys)
	case len(keys) == 0:
		v.Check("prefix", upstream.CheckKeyPrefix(prefix))
	}
	if len(keys) <= MaxWatchKeys {
		v.checkKeyList("keys", keys, false)
	}
	interval := s.watch.cfg.MinInterval
	if d := req.GetInterval(); d != nil {
		switch {
		case d.CheckValid() != nil:
			v.Add("interval", "interval is not a valid duration")
		case d.AsDuration() < 0:
			v.Add("interval", "interval must not be negative")
		default:
			interval = max(interval, d.AsDuration())
		}
	}
	known := make(map[string]uint64, len(req.GetKnown()))
	bad := keyViolations{v: &v, field: "known"}
	for i, kg := range req.GetKnown() {
		field := fmt.Sprintf("known[%d].key", i)
		if err := upstream.CheckKey(kg.GetKey()); err != nil {
			bad.add(field, err)
			continue
		}
		if _, dup := known[kg.GetKey()]; dup {
			bad.add(field, fmt.Errorf("%q is listed more than once", kg.GetKey()))
			continue
		}
		known[kg.GetKey()] = kg.GetGeneration()
	}
	bad.done()
	if err := v.Err(); err != nil {
		return nil, err
	}
	spec := &watchSpec{store: req.GetStoreId(), prefix: prefix, interval: interval, initialState: req.GetSendInitialState()}
	if len(keys) > 0 {
		spec.keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	}
	if !spec.initialState {
		spec.known = known
		maps.DeleteFunc(spec.known, func(k string, _ uint64) bool { return !spec.watches(k) })
	}
	return spec, nil
}
