package service

import (
	"maps"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// keyState is what one poll saw of a key.
type keyState struct {
	present bool
	item    *upstream.Item // when present
}

// observation is what one poll round found for a watcher.
type observation struct {
	// seq numbers the round within its poller; a watcher takes only rounds
	// that began after it joined.
	seq     uint64
	started time.Time
	// states holds the keys the round settled.
	states map[string]keyState
	// listed is set by a prefix poll whose listing succeeded: every key
	// neither in states nor in unsettled is absent.
	listed bool
	// unsettled are the listed keys whose HEAD failed this round.
	unsettled map[string]bool
}

// watcher is one WatchItems stream's view of the poll results. Each
// watcher holds its own baseline: sent is what its caller has been told,
// and pending the latest state of each key that differs from it and has
// not been sent yet. A poll never waits for a watcher: it replaces the
// pending state, so a slow caller is sent each key's latest state, not a
// backlog, and memory stays bounded by the watched keys:
//
//   - created, then updated before it was sent: one CREATED with the
//     latest item;
//   - created, then deleted: nothing;
//   - updated, then deleted: DELETED;
//   - deleted, then created again: UPDATED with the new item;
//   - changed, then changed back to what was sent (a generation cannot
//     come back, so only a key absent again): nothing.
type watcher struct {
	spec  *watchSpec
	dirty chan struct{} // has room for one wake-up
	// failed is closed, with err set, when the watch's poller fails for good.
	failed chan struct{}

	mu      sync.Mutex
	joinSeq uint64
	err     *connect.Error
	// Before the initial message: the states gathered from the rounds
	// since joining (keys mode gathers one per key, prefix mode takes one
	// fully settled round).
	ready   bool
	initObs map[string]keyState
	initAt  time.Time
	// initial is the built initial message until it is sent.
	initial *kvv1.WatchItemsResponse
	sent    map[string]uint64
	pending map[string]keyState
	// pendingAt is the start of the latest round that changed pending.
	pendingAt time.Time
}

func newWatcher(spec *watchSpec) *watcher {
	return &watcher{
		spec:    spec,
		dirty:   make(chan struct{}, 1),
		failed:  make(chan struct{}),
		initObs: make(map[string]keyState),
		sent:    make(map[string]uint64),
		pending: make(map[string]keyState),
	}
}

func (w *watcher) wake() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// fail ends the watch with the error newErr makes; the poller calls it
// once. Each watch gets an error of its own: connect-go may write to an
// error it sends (its metadata), so one must not be shared by streams.
func (w *watcher) fail(newErr func() *connect.Error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = newErr()
		close(w.failed)
	}
}

func (w *watcher) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		return nil
	}
	return w.err
}

// observe takes one round's results.
func (w *watcher) observe(obs *observation) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if obs.seq <= w.joinSeq || w.err != nil {
		return // began before the watcher joined: not its baseline
	}
	if !w.ready {
		w.gatherInitial(obs)
		return
	}
	changed := false
	for k, st := range obs.states {
		changed = w.note(k, st) || changed
	}
	if obs.listed {
		// Keys told present, or pending as created, that the listing no
		// longer holds are gone.
		var gone []string
		for k := range w.sent {
			if obs.absent(k) {
				gone = append(gone, k)
			}
		}
		for k := range w.pending {
			if _, told := w.sent[k]; !told && obs.absent(k) {
				gone = append(gone, k)
			}
		}
		for _, k := range gone {
			changed = w.note(k, keyState{}) || changed
		}
	}
	if changed {
		w.pendingAt = obs.started
		w.wake()
	}
}

// absent reports whether a listed round found key absent.
func (o *observation) absent(key string) bool {
	_, settled := o.states[key]
	return !settled && !o.unsettled[key]
}

// note records key's observed state and reports whether pending changed.
func (w *watcher) note(key string, st keyState) bool {
	gen, told := w.sent[key]
	if st.present == told && (!st.present || st.item.Generation == gen) {
		_, had := w.pending[key]
		delete(w.pending, key)
		return had
	}
	if old, ok := w.pending[key]; ok && old.present == st.present && (!st.present || old.item.Generation == st.item.Generation) {
		return false
	}
	w.pending[key] = st
	return true
}

// gatherInitial collects the states the initial message is built from,
// and builds it once they cover every watched key.
func (w *watcher) gatherInitial(obs *observation) {
	if w.spec.prefixMode() {
		if !obs.listed {
			return // wait for a round that listed the prefix
		}
		// The latest listing says which keys exist; a key whose HEAD
		// failed this round keeps the state an earlier round found, so a
		// large prefix on a flaky upstream still gets its initial message
		// once every listed key has been seen once.
		states := maps.Clone(obs.states)
		missing := false
		for k := range obs.unsettled {
			if st, ok := w.initObs[k]; ok {
				states[k] = st
			} else {
				missing = true
			}
		}
		w.initObs = states
		if w.initAt.IsZero() {
			w.initAt = obs.started
		}
		if missing {
			return
		}
	} else {
		for k, st := range obs.states {
			if w.spec.watches(k) {
				w.initObs[k] = st
			}
		}
		if w.initAt.IsZero() {
			w.initAt = obs.started
		}
		if len(w.initObs) < len(w.spec.keys) {
			return
		}
	}
	w.ready = true
	msg := &kvv1.WatchItemsResponse{Initial: true, ObservedAt: timestamppb.New(w.initAt)}
	keys := slices.Sorted(maps.Keys(w.initObs))
	if !w.spec.initialState {
		for k := range w.spec.known {
			if _, ok := w.initObs[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
	}
	for _, k := range keys {
		st := w.initObs[k]
		if st.present {
			w.sent[k] = st.item.Generation
		}
		if w.spec.initialState {
			if st.present {
				msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_PRESENT, k, st))
			}
			continue
		}
		gen, known := w.spec.known[k]
		switch {
		case st.present && !known:
			msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_CREATED, k, st))
		case st.present && st.item.Generation != gen:
			msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_UPDATED, k, st))
		case !st.present && known:
			msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_DELETED, k, st))
		}
	}
	w.initObs = nil
	w.initial = msg
	w.wake()
}

// take returns the next message to send, nil when there is none: the
// initial message, then the pending changes in key order.
func (w *watcher) take() *kvv1.WatchItemsResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	if msg := w.initial; msg != nil {
		w.initial = nil
		return msg
	}
	if len(w.pending) == 0 {
		return nil
	}
	msg := &kvv1.WatchItemsResponse{ObservedAt: timestamppb.New(w.pendingAt)}
	for _, k := range slices.Sorted(maps.Keys(w.pending)) {
		st := w.pending[k]
		_, told := w.sent[k]
		switch {
		case st.present && told:
			msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_UPDATED, k, st))
		case st.present:
			msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_CREATED, k, st))
		default:
			msg.Changes = append(msg.Changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_DELETED, k, st))
		}
		if st.present {
			w.sent[k] = st.item.Generation
		} else {
			delete(w.sent, k)
		}
	}
	clear(w.pending)
	return msg
}

// itemChange is one change as the stream carries it: the item without
// its value, none for DELETED.
func itemChange(t kvv1.ChangeType, key string, st keyState) *kvv1.ItemChange {
	c := &kvv1.ItemChange{Type: t, Key: key}
	if st.present {
		c.Item = itemProto(key, st.item, false)
	}
	return c
}

// splitWatchMessage splits msg into messages of at most limit bytes (one
// change larger than that goes alone), in order, each with msg's initial
// flag and observed_at: every part of the initial state is marked
// initial. A message with no changes is sent as it is.
func splitWatchMessage(msg *kvv1.WatchItemsResponse, limit int) []*kvv1.WatchItemsResponse {
	if proto.Size(msg) <= limit {
		return []*kvv1.WatchItemsResponse{msg}
	}
	var (
		parts []*kvv1.WatchItemsResponse
		size  int
	)
	head := proto.Size(&kvv1.WatchItemsResponse{Initial: msg.GetInitial(), ObservedAt: msg.GetObservedAt()})
	for _, c := range msg.GetChanges() {
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(c))
		if len(parts) == 0 || size+n > limit {
			parts = append(parts, &kvv1.WatchItemsResponse{Initial: msg.GetInitial(), ObservedAt: msg.GetObservedAt()})
			size = head
		}
		last := parts[len(parts)-1]
		last.Changes = append(last.Changes, c)
		size += n
	}
	return parts
}
