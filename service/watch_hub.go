package service

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/upstream"
)

// watchHub runs the pollers of the watches in progress. Watchers of the
// same store share pollers: in keys mode one poller per store polls each
// watched key once per round however many watchers name it, each key at
// the shortest interval its watchers asked for; in prefix mode one poller
// per store and prefix lists and polls for all its watchers. Pollers are
// also keyed by the caller's Fastly token (pass-through mode), so a caller
// only ever sees what its own token reads. A poller stops when its last
// watcher leaves.
type watchHub struct {
	kv    Upstream
	cfg   WatchConfig
	words wording
	// newLister lists a prefix, as ListKeys does.
	newLister func(store, prefix string) *lister

	// drained is closed by Drain: every watch ends without an error.
	drained   chan struct{}
	drainOnce sync.Once

	mu      sync.Mutex
	pollers map[pollerID]*poller
}

// pollerID names what a poller polls.
type pollerID struct {
	token, store string
	prefixMode   bool
	prefix       string
}

func newWatchHub(kv Upstream, cfg WatchConfig, words wording, newLister func(store, prefix string) *lister) *watchHub {
	return &watchHub{kv: kv, cfg: cfg.withDefaults(), words: words, newLister: newLister,
		drained: make(chan struct{}), pollers: make(map[pollerID]*poller)}
}

func (h *watchHub) drain() { h.drainOnce.Do(func() { close(h.drained) }) }

// join adds w to the poller of its spec, starting one if none runs, and
// asks for a poll of its keys that begins after it joined.
func (h *watchHub) join(ctx context.Context, spec *watchSpec, w *watcher) *poller {
	id := pollerID{token: upstream.TokenFrom(ctx), store: spec.store, prefixMode: spec.prefixMode(), prefix: spec.prefix}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pollers[id]
	if p == nil {
		p = newPoller(h, id)
		h.pollers[id] = p
		go p.run()
	}
	p.add(w)
	return p
}

// leave removes w from p, and stops p when w was its last watcher.
func (h *watchHub) leave(p *poller, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.remove(w) == 0 {
		if h.pollers[p.id] == p {
			delete(h.pollers, p.id)
		}
		p.cancel()
	}
}

// pollerCount is how many pollers run.
func (h *watchHub) pollerCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pollers)
}

// poller polls one store's watched keys, or one prefix, for its watchers.
// Rounds never overlap, so each watcher sees them in order.
type poller struct {
	hub    *watchHub
	id     pollerID
	ctx    context.Context
	cancel context.CancelFunc
	wakeCh chan struct{}

	mu       sync.Mutex
	seq      uint64 // the last round begun
	watchers map[*watcher]struct{}
	// keys mode: each watched key and its schedule.
	keys map[string]*polledKey
	// prefix mode: the poller's own schedule.
	sched schedule
}

// schedule is when a key (or a prefix) is next polled.
type schedule struct {
	polled    bool
	lastStart time.Time
	// fresh is set when a watcher joined after the last poll began: it
	// needs a poll of its own, as soon as the floor allows.
	fresh bool
}

// next is when the schedule is due, given its interval and the floor.
func (s *schedule) next(interval, floor time.Duration) time.Time {
	switch {
	case !s.polled:
		return time.Time{}
	case s.fresh:
		return s.lastStart.Add(floor)
	}
	return s.lastStart.Add(interval)
}

func (s *schedule) begin(now time.Time) {
	s.polled, s.lastStart, s.fresh = true, now, false
}

type polledKey struct {
	sched    schedule
	watchers map[*watcher]struct{}
}

func newPoller(h *watchHub, id pollerID) *poller {
	ctx := context.Background()
	if id.token != "" {
		ctx = upstream.WithToken(ctx, id.token)
	}
	ctx, cancel := context.WithCancel(ctx)
	return &poller{hub: h, id: id, ctx: ctx, cancel: cancel, wakeCh: make(chan struct{}, 1),
		watchers: make(map[*watcher]struct{}), keys: make(map[string]*polledKey)}
}

func (p *poller) add(w *watcher) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.mu.Lock()
	w.joinSeq = p.seq
	w.mu.Unlock()
	p.watchers[w] = struct{}{}
	if p.id.prefixMode {
		p.sched.fresh = p.sched.polled
	} else {
		for _, k := range w.spec.keys {
			pk := p.keys[k]
			if pk == nil {
				pk = &polledKey{watchers: make(map[*watcher]struct{})}
				p.keys[k] = pk
			}
			pk.watchers[w] = struct{}{}
			pk.sched.fresh = pk.sched.polled
		}
	}
	p.wake()
}

// remove removes w and returns how many watchers are left.
func (p *poller) remove(w *watcher) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.watchers, w)
	for _, k := range w.spec.keys {
		if pk := p.keys[k]; pk != nil {
			delete(pk.watchers, w)
			if len(pk.watchers) == 0 {
				delete(p.keys, k)
			}
		}
	}
	p.wake()
	return len(p.watchers)
}

func (p *poller) wake() {
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

// interval is the shortest interval of watchers; each is at least the
// floor already.
func interval(watchers map[*watcher]struct{}) time.Duration {
	var d time.Duration
	for w := range watchers {
		if d == 0 || w.spec.interval < d {
			d = w.spec.interval
		}
	}
	return d
}

// run polls until the poller is stopped or fails.
func (p *poller) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		seq, keys, wait := p.due(time.Now())
		if seq != 0 {
			if !p.round(seq, keys) {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-p.ctx.Done():
			return
		case <-p.wakeCh:
		case <-timer.C:
		}
	}
}

// due begins the next round if one is due: it returns the round's
// number (0 when none is due) and, in keys mode, the keys to poll, or
// how long to wait before asking again.
func (p *poller) due(now time.Time) (seq uint64, keys []string, wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	floor := p.hub.cfg.MinInterval
	wait = time.Hour
	if p.id.prefixMode {
		if len(p.watchers) == 0 {
			return 0, nil, wait
		}
		next := p.sched.next(interval(p.watchers), floor)
		if next.After(now) {
			return 0, nil, next.Sub(now)
		}
		p.sched.begin(now)
		p.seq++
		return p.seq, nil, 0
	}
	for k, pk := range p.keys {
		next := pk.sched.next(interval(pk.watchers), floor)
		if next.After(now) {
			wait = min(wait, next.Sub(now))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return 0, nil, wait
	}
	for _, k := range keys {
		p.keys[k].sched.begin(now)
	}
	p.seq++
	return p.seq, keys, 0
}

// errTooManyKeys ends prefix watches over more keys than kvgate watches.
var errTooManyKeys = errors.New("too many keys under the prefix")

// round polls once and hands the results to the watchers; false means
// the poller has stopped (or failed) and must return.
func (p *poller) round(seq uint64, keys []string) bool {
	obs := &observation{seq: seq, started: time.Now()}
	if p.id.prefixMode {
		listed, err := p.list()
		if err != nil {
			return p.pollFailed(err)
		}
		keys = listed
		obs.listed = true
	}
	states, unsettled, err := p.headAll(keys)
	if err != nil {
		return p.pollFailed(err)
	}
	if p.ctx.Err() != nil {
		return false
	}
	obs.states, obs.unsettled = states, unsettled
	p.deliver(obs)
	return true
}

// pollFailed handles a failed poll: a failure that will not pass ends every
// watch of the poller; any other (already retried by the upstream
// client) skips the round, and the next one tries again.
func (p *poller) pollFailed(err error) bool {
	if p.ctx.Err() != nil {
		return false
	}
	if p.hub.permanent(err) == nil {
		return true
	}
	p.hub.mu.Lock()
	if p.hub.pollers[p.id] == p {
		delete(p.hub.pollers, p.id)
	}
	p.hub.mu.Unlock()
	p.mu.Lock()
	for w := range p.watchers {
		w.fail(func() *connect.Error { return p.hub.permanent(err) })
	}
	p.mu.Unlock()
	p.cancel()
	return false
}

// permanent maps a poll failure that will not pass by polling again: the
// token refused, a request Fastly calls invalid, a store that does not
// exist (a listing's 404; a HEAD's 404 is an absent key), or too many keys
// under a prefix. Anything else is nil.
func (h *watchHub) permanent(err error) *connect.Error {
	if errors.Is(err, errTooManyKeys) {
		return withInfo(connect.NewError(connect.CodeFailedPrecondition,
			"the prefix holds more than "+strconv.Itoa(h.cfg.MaxKeys)+
				" keys, the most kvgate watches under one prefix; watch a longer prefix or a list of keys"),
			reasonWatchTooManyKeys, 0).WithCause(err)
	}
	switch upstream.KindOf(err) {
	case upstream.KindUnauthorized, upstream.KindForbidden, upstream.KindBadRequest, upstream.KindNotFound:
		return h.words.fromUpstream(err, storeSubject)
	}
	return nil
}

// list walks the prefix's whole listing.
func (p *poller) list() ([]string, error) {
	l := p.hub.newLister(p.id.store, p.id.prefix)
	var keys []string
	pos := position{}
	for {
		pg, err := l.fetch(p.ctx, pos)
		if err != nil {
			return nil, err
		}
		keys = append(keys, pg.keys...)
		if len(keys) > p.hub.cfg.MaxKeys {
			return nil, errTooManyKeys
		}
		if pg.next.end {
			return keys, nil
		}
		pos = pg.next
	}
}

// headAll HEADs keys with bounded concurrency. A key Fastly does not have
// is absent; a key whose HEAD failed for a while is unsettled; a failure
// that will not pass is returned.
func (p *poller) headAll(keys []string) (states map[string]keyState, unsettled map[string]bool, err error) {
	type result struct {
		st  keyState
		err error
	}
	results := make([]result, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(p.hub.cfg.Concurrency, len(keys)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) || p.ctx.Err() != nil {
					return
				}
				item, err := p.hub.kv.HeadItem(p.ctx, p.id.store, keys[i])
				switch {
				case err == nil:
					results[i].st = keyState{present: true, item: item}
				case upstream.KindOf(err) != upstream.KindNotFound: // a 404 is an absent key
					results[i].err = err
				}
			}
		})
	}
	wg.Wait()
	states = make(map[string]keyState, len(keys))
	for i, r := range results {
		switch {
		case r.err == nil:
			states[keys[i]] = r.st
		case p.hub.permanent(r.err) != nil:
			return nil, nil, r.err
		default:
			if unsettled == nil {
				unsettled = make(map[string]bool)
			}
			unsettled[keys[i]] = true
		}
	}
	return states, unsettled, nil
}

// deliver hands a round's results to the watchers; in keys mode each gets
// the states of its own keys.
func (p *poller) deliver(obs *observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.id.prefixMode {
		for w := range p.watchers {
			w.observe(obs)
		}
		return
	}
	per := make(map[*watcher]*observation)
	for k, st := range obs.states {
		pk := p.keys[k]
		if pk == nil {
			continue
		}
		for w := range pk.watchers {
			o := per[w]
			if o == nil {
				o = &observation{seq: obs.seq, started: obs.started, states: make(map[string]keyState)}
				per[w] = o
			}
			o.states[k] = st
		}
	}
	for w, o := range per {
		w.observe(o)
	}
}
