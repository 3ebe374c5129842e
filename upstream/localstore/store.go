// Package localstore is a Fastly-compatible KV Store REST server: it serves
// the store, item, listing and batch endpoints under /resources/stores/kv
// from a bbolt file or from memory, so that Fastly clients run without a
// Fastly account. Stores are created, listed, described, renamed and
// deleted as on Fastly. Unlike on Fastly, a store id that was never created
// is also created by its first item write, named after its id, unless
// [Config.StrictStoreIDs] is set.
//
// [Faults], set by [Config.Faults] or [Store.SetFaults], make the store
// slow or failing, for testing clients; [ParseFaults] reads them from a flag.
package localstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// Config configures a Store.
type Config struct {
	// Dir is the data directory; empty keeps everything in memory.
	Dir string
	// MaxValueBytes is the largest value a write accepts;
	// upstream.DefaultMaxValueBytes when zero.
	MaxValueBytes int64
	// Now returns the current time; time.Now when nil. Tests move it to
	// expire items.
	Now func() time.Time
	// Logger receives request failures; slog.Default() when nil.
	Logger *slog.Logger
	// MaxBatchBytes is the largest batch request body the store reads;
	// DefaultMaxBatchBytes when zero. A larger body is refused with 413.
	// The items of a batch are held in memory until they are applied, so
	// this bounds the memory a batch takes (to a small multiple of it).
	MaxBatchBytes int64
	// Faults are injected into every request from the start;
	// [Store.SetFaults] changes them at run time.
	Faults Faults
	// OnRequest, when set, is called with every request as it arrives:
	// after it is counted and before any injected latency or handling. It
	// runs on the request's goroutine, so a test can block in it to hold a
	// request in flight. It must not read or close the body.
	OnRequest func(*http.Request)
	// StrictStoreIDs makes item calls on a store id that was never created
	// (by POST /resources/stores/kv, or by an item write without strict
	// ids) answer 404, as Fastly does. Without it the first item write to
	// an unknown id creates the store, which lets a client start writing
	// with no setup.
	StrictStoreIDs bool
	// LockTimeout is how long Open waits for the data directory when
	// another process holds it, before failing with an error matching
	// ErrInUse; DefaultLockTimeout when zero.
	LockTimeout time.Duration
}

// DefaultMaxBatchBytes is the batch body limit when Config.MaxBatchBytes
// is zero. Fastly documents no limit; this one only bounds memory.
const DefaultMaxBatchBytes = 256 << 20

// Store is the local KV store.
type Store struct {
	backend   backend
	maxValue  int64
	maxBatch  int64
	now       func() time.Time
	log       *slog.Logger
	onRequest func(*http.Request)
	strictIDs bool
	faults    atomic.Pointer[Faults]
	requests  atomic.Int64
	counts    [numRequestKinds]atomic.Int64

	// faultState draws the failures and counts them.
	faultState faultState
}

// Open opens the store in cfg.Dir, or in memory when it is empty.
func Open(cfg Config) (*Store, error) {
	s := &Store{
		maxValue:  cfg.MaxValueBytes,
		maxBatch:  cfg.MaxBatchBytes,
		now:       cfg.Now,
		log:       cfg.Logger,
		onRequest: cfg.OnRequest,
		strictIDs: cfg.StrictStoreIDs,
	}
	if s.maxValue <= 0 {
		s.maxValue = upstream.DefaultMaxValueBytes
	}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatchBytes
	}
	s.SetFaults(cfg.Faults)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.Dir == "" {
		s.backend = newMemBackend()
		return s, nil
	}
	b, err := openBolt(cfg.Dir, s.now(), cfg.LockTimeout)
	if err != nil {
		return nil, err
	}
	s.backend = b
	return s, nil
}

// Close releases the data file.
func (s *Store) Close() error { return s.backend.close() }

// Requests is the number of HTTP requests the store has received, for tests
// that prove a request never reached the upstream. It is the sum of Count
// over every RequestKind.
func (s *Store) Requests() int64 { return s.requests.Load() }

// errNotFound and errPrecondition are the outcomes the HTTP layer answers
// with 404 and 412.
var (
	errNotFound     = errors.New("not found")
	errPrecondition = errors.New("precondition failed")
)

// nextGeneration returns a generation larger than every earlier one. Like
// Fastly's, it tracks the write time in microseconds, but it only promises
// to increase.
func (s *Store) nextGeneration(last uint64, now time.Time) uint64 {
	return max(last+1, uint64(now.UnixMicro()))
}

func (s *Store) getItem(store, key string) (*record, error) {
	if err := s.requireStore(store); err != nil {
		return nil, err
	}
	rec, err := s.backend.get(store, key)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.expired(s.now()) {
		return nil, errNotFound
	}
	return rec, nil
}

// putMode mirrors Fastly's mutually exclusive add/append/prepend flags.
type putMode int

const (
	modeOverwrite putMode = iota
	modeAdd
	modeAppend
	modePrepend
)

type putRequest struct {
	mode     putMode
	ifGen    *uint64
	metadata string
	ttl      time.Duration
	value    []byte
}

func (s *Store) putItem(store, key string, p putRequest) error {
	if err := s.requireStore(store); err != nil {
		return err
	}
	now := s.now()
	return s.backend.update(store, key, func(cur *record, lastGen uint64) (*record, error) {
		if cur != nil && cur.expired(now) {
			cur = nil
		}
		var curGen uint64 // an absent item matches generation 0, as add=true does
		if cur != nil {
			curGen = cur.Generation
		}
		if p.mode == modeAdd && cur != nil {
			return nil, errPrecondition
		}
		if p.ifGen != nil && *p.ifGen != curGen {
			return nil, errPrecondition
		}
		next := &record{
			Generation: s.nextGeneration(lastGen, now),
			Modified:   now,
			Metadata:   p.metadata, // every write replaces the metadata
			Value:      p.value,
		}
		if p.ttl > 0 {
			next.Expires = now.Add(p.ttl)
		}
		if cur != nil {
			switch p.mode {
			case modeAppend:
				next.Value = concat(cur.Value, p.value)
			case modePrepend:
				next.Value = concat(p.value, cur.Value)
			}
		}
		return next, nil
	})
}

// batchItem is one line of a batch: a plain upsert.
type batchItem struct {
	key      string
	metadata string
	ttl      time.Duration
	value    []byte
}

// putBatch upserts items into store in one backend transaction, in order,
// each with a generation above the one before it: a later item for the
// same key wins. Like every write, an item replaces the metadata (none
// clears it) and sets or clears the time to live.
func (s *Store) putBatch(store string, items []batchItem) error {
	if err := s.requireStore(store); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	now := s.now()
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	return s.backend.putBatch(store, keys, func(i int, lastGen uint64) *record {
		it := items[i]
		rec := &record{
			Generation: s.nextGeneration(lastGen, now),
			Modified:   now,
			Metadata:   it.metadata,
			Value:      it.value,
		}
		if it.ttl > 0 {
			rec.Expires = now.Add(it.ttl)
		}
		return rec
	})
}

// maxTTLSeconds caps a time to live at 100 years, so that the expiry stays
// within what a record can hold (Unix nanoseconds, up to the year 2262) and
// the duration cannot overflow. No client can tell the difference.
const maxTTLSeconds = 100 * 365 * 24 * 60 * 60

var errBadTTL = errors.New("time_to_live_sec must be a positive integer")

// ttlFromSeconds turns a time_to_live_sec value into a duration.
func ttlFromSeconds(secs int64) (time.Duration, error) {
	if secs <= 0 {
		return 0, errBadTTL
	}
	return time.Duration(min(secs, maxTTLSeconds)) * time.Second, nil
}

func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

func (s *Store) deleteItem(store, key string, force bool, ifGen *uint64) error {
	if err := s.requireStore(store); err != nil {
		return err
	}
	now := s.now()
	return s.backend.update(store, key, func(cur *record, _ uint64) (*record, error) {
		if cur == nil || cur.expired(now) {
			if force {
				return nil, nil
			}
			return nil, errNotFound
		}
		if ifGen != nil && *ifGen != cur.Generation {
			return nil, errPrecondition
		}
		return nil, nil
	})
}

func (s *Store) listKeys(store, prefix, after string, limit int) ([]string, bool, error) {
	ok, err := s.backend.hasStore(store)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, errNoStore
	}
	keys, more, err := s.backend.list(store, prefix, after, limit, s.now())
	if err != nil {
		return nil, false, fmt.Errorf("listing: %w", err)
	}
	return keys, more, nil
}
