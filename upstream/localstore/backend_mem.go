package localstore

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
)

type memEntry struct {
	key string
	rec *record
}

func lessEntry(a, b memEntry) bool { return a.key < b.key }

// memBackend keeps items in ordered B-trees, one per store, for tests and
// throwaway runs.
type memBackend struct {
	mu      sync.RWMutex
	stores  map[string]*btree.BTreeG[memEntry]
	infos   map[string]storeInfo
	lastGen uint64
}

func newMemBackend() *memBackend {
	return &memBackend{
		stores: make(map[string]*btree.BTreeG[memEntry]),
		infos:  make(map[string]storeInfo),
	}
}

// tree returns the items of store, creating them, and the store's details
// when it has none, on its first write at time at.
func (m *memBackend) tree(store string, at time.Time) *btree.BTreeG[memEntry] {
	t := m.stores[store]
	if t == nil {
		t = btree.NewG(32, lessEntry)
		m.stores[store] = t
	}
	if _, ok := m.infos[store]; !ok {
		m.infos[store] = implicitStore(store, at)
	}
	return t
}

func (m *memBackend) get(store, key string) (*record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.stores[store]
	if t == nil {
		return nil, nil
	}
	e, ok := t.Get(memEntry{key: key})
	if !ok {
		return nil, nil
	}
	return e.rec, nil
}

func (m *memBackend) update(store, key string, fn func(*record, uint64) (*record, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.stores[store]
	var cur *record
	if t != nil {
		if e, ok := t.Get(memEntry{key: key}); ok {
			cur = e.rec
		}
	}
	next, err := fn(cur, m.lastGen)
	if err != nil {
		return err
	}
	if next == nil {
		if t != nil {
			t.Delete(memEntry{key: key})
		}
		return nil
	}
	t = m.tree(store, next.Modified)
	t.ReplaceOrInsert(memEntry{key: key, rec: next})
	m.lastGen = max(m.lastGen, next.Generation)
	return nil
}

func (m *memBackend) putBatch(store string, keys []string, build func(int, uint64) *record) error {
	if len(keys) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var t *btree.BTreeG[memEntry]
	for i, key := range keys {
		rec := build(i, m.lastGen)
		if t == nil {
			t = m.tree(store, rec.Modified)
		}
		t.ReplaceOrInsert(memEntry{key: key, rec: rec})
		m.lastGen = max(m.lastGen, rec.Generation)
	}
	return nil
}

func (m *memBackend) list(store, prefix, after string, limit int, now time.Time) ([]string, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.stores[store]
	if t == nil {
		return nil, false, nil
	}
	var keys []string
	more := false
	t.AscendGreaterOrEqual(memEntry{key: max(prefix, after)}, func(e memEntry) bool {
		if e.key == after {
			return true
		}
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if e.rec.expired(now) {
			return true
		}
		if len(keys) == limit {
			more = true
			return false
		}
		keys = append(keys, e.key)
		return true
	})
	return keys, more, nil
}

func (m *memBackend) hasStore(store string) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.infos[store]
	return ok, nil
}

func (m *memBackend) getStore(id string) (*storeInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	info, ok := m.infos[id]
	if !ok {
		return nil, nil
	}
	return &info, nil
}

func (m *memBackend) listStores(name, after string, limit int) ([]storeInfo, bool, int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := slices.Sorted(maps.Keys(m.infos))
	var page []storeInfo
	more, total := false, 0
	for _, id := range ids {
		info := m.infos[id]
		if name != "" && info.Name != name {
			continue
		}
		total++
		if id <= after {
			continue
		}
		if len(page) == limit {
			more = true
			continue
		}
		page = append(page, info)
	}
	return page, more, total, nil
}

func (m *memBackend) saveStore(info storeInfo, create bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, exists := m.infos[info.ID]
	switch {
	case create && exists:
		return errStoreExists
	case !create && !exists:
		return errNotFound
	}
	for id, other := range m.infos {
		if id != info.ID && other.Name == info.Name {
			return errNameTaken
		}
	}
	m.infos[info.ID] = info
	return nil
}

func (m *memBackend) deleteStore(id string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.infos[id]; !ok {
		return errNotFound
	}
	if t := m.stores[id]; t != nil {
		live := false
		t.Ascend(func(e memEntry) bool {
			live = !e.rec.expired(now)
			return !live
		})
		if live {
			return errNotEmpty
		}
	}
	delete(m.stores, id)
	delete(m.infos, id)
	return nil
}

func (m *memBackend) close() error { return nil }
