// Package localstore is a Fastly-compatible KV Store REST server. It serves
// the item endpoints under /resources/stores/kv/ with the semantics Fastly's
// recorded traffic and documentation show, persisting to a bbolt file (or
// memory), so that kvgate and any other Fastly client can run without a
// Fastly account.
//
// The one deliberate difference from Fastly: a store id that was never
// written to is created by its first write, where Fastly needs the store to
// be created through its own endpoint first.
package localstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// Options configures a Store.
type Options struct {
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
}

// Store is the local KV store.
type Store struct {
	backend  backend
	maxValue int64
	now      func() time.Time
	log      *slog.Logger
	requests atomic.Int64
}

// Open opens the store in opts.Dir, or in memory when it is empty.
func Open(opts Options) (*Store, error) {
	s := &Store{maxValue: opts.MaxValueBytes, now: opts.Now, log: opts.Logger}
	if s.maxValue <= 0 {
		s.maxValue = upstream.DefaultMaxValueBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.Dir == "" {
		s.backend = newMemBackend()
		return s, nil
	}
	b, err := openBolt(opts.Dir)
	if err != nil {
		return nil, err
	}
	s.backend = b
	return s, nil
}

// Close releases the data file.
func (s *Store) Close() error { return s.backend.close() }

// Requests is the number of HTTP requests the store has received, for tests
// that prove a request never reached the upstream.
func (s *Store) Requests() int64 { return s.requests.Load() }

// errAbsent and the others are the outcomes the HTTP layer turns into
// statuses.
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

func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

func (s *Store) deleteItem(store, key string, force bool, ifGen *uint64) error {
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
		return nil, false, errNotFound
	}
	keys, more, err := s.backend.list(store, prefix, after, limit, s.now())
	if err != nil {
		return nil, false, fmt.Errorf("listing: %w", err)
	}
	return keys, more, nil
}
