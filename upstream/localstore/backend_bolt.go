package localstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// storesBucket holds one nested bucket per store id.
	storesBucket = []byte("stores")
	// metaBucket holds the last generation handed out, so generations keep
	// increasing across restarts even if the clock steps back.
	metaBucket  = []byte("meta")
	lastGenName = []byte("last-generation")
	// infoBucket holds each store's details (JSON storeInfo) by store id.
	infoBucket = []byte("store-info")
)

// boltBackend keeps items in a bbolt file: one file, crash-safe
// transactions, ordered keys, and no server to run.
type boltBackend struct {
	db *bolt.DB
}

// openBolt opens the database in dir, creating it only when its file does
// not exist, and refuses a damaged one (see openDataFile) before writing
// anything to it. It waits up to lockTimeout for another process's lock.
// A store whose items were written before stores had details gets them
// now, named after its id and created at now.
func openBolt(dir string, now time.Time, lockTimeout time.Duration) (*boltBackend, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("localstore: creating data directory: %w", err)
	}
	db, _, err := openDataFile(filepath.Join(dir, DataFileName), lockTimeout, false)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(storesBucket); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(metaBucket); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(infoBucket); err != nil {
			return err
		}
		return tx.Bucket(storesBucket).ForEachBucket(func(id []byte) error {
			return ensureInfo(tx, string(id), now)
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("localstore: initialising database: %w", err)
	}
	return &boltBackend{db: db}, nil
}

func (b *boltBackend) get(store, key string) (*record, error) {
	var rec *record
	err := b.read(func(tx *bolt.Tx) error {
		sb := tx.Bucket(storesBucket).Bucket([]byte(store))
		if sb == nil {
			return nil
		}
		v := sb.Get([]byte(key))
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodeRecord(v, true) // v is only valid inside the transaction
		return err
	})
	return rec, err
}

func (b *boltBackend) update(store, key string, fn func(*record, uint64) (*record, error)) error {
	return b.write(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		var lastGen uint64
		if v := meta.Get(lastGenName); len(v) == 8 {
			lastGen = binary.BigEndian.Uint64(v)
		}
		stores := tx.Bucket(storesBucket)
		sb := stores.Bucket([]byte(store))
		var cur *record
		if sb != nil {
			if v := sb.Get([]byte(key)); v != nil {
				var err error
				if cur, err = decodeRecord(v, true); err != nil {
					return err
				}
			}
		}
		next, err := fn(cur, lastGen)
		if err != nil {
			return err
		}
		if next == nil {
			if sb == nil {
				return nil
			}
			return sb.Delete([]byte(key))
		}
		if sb == nil {
			if sb, err = stores.CreateBucket([]byte(store)); err != nil {
				return err
			}
			if err := ensureInfo(tx, store, next.Modified); err != nil {
				return err
			}
		}
		if err := sb.Put([]byte(key), next.encode()); err != nil {
			return err
		}
		gen := binary.BigEndian.AppendUint64(nil, max(lastGen, next.Generation))
		return meta.Put(lastGenName, gen)
	})
}

// putBatch writes the whole batch in one bbolt transaction, so it costs
// one commit (one fsync) however many records it holds.
func (b *boltBackend) putBatch(store string, keys []string, build func(int, uint64) *record) error {
	if len(keys) == 0 {
		return nil
	}
	return b.write(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		var lastGen uint64
		if v := meta.Get(lastGenName); len(v) == 8 {
			lastGen = binary.BigEndian.Uint64(v)
		}
		sb, err := tx.Bucket(storesBucket).CreateBucketIfNotExists([]byte(store))
		if err != nil {
			return err
		}
		for i, key := range keys {
			rec := build(i, lastGen)
			if i == 0 {
				if err := ensureInfo(tx, store, rec.Modified); err != nil {
					return err
				}
			}
			if err := sb.Put([]byte(key), rec.encode()); err != nil {
				return err
			}
			lastGen = max(lastGen, rec.Generation)
		}
		return meta.Put(lastGenName, binary.BigEndian.AppendUint64(nil, lastGen))
	})
}

func (b *boltBackend) list(store, prefix, after string, limit int, now time.Time) ([]string, bool, error) {
	var keys []string
	more := false
	err := b.read(func(tx *bolt.Tx) error {
		sb := tx.Bucket(storesBucket).Bucket([]byte(store))
		if sb == nil {
			return nil
		}
		c := sb.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek([]byte(max(prefix, after))); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if string(k) == after {
				continue
			}
			if exp := expiresAt(v); !exp.IsZero() && !now.Before(exp) {
				continue
			}
			if len(keys) == limit {
				more = true
				break
			}
			keys = append(keys, string(k))
		}
		return nil
	})
	return keys, more, err
}

func (b *boltBackend) hasStore(store string) (bool, error) {
	found := false
	err := b.read(func(tx *bolt.Tx) error {
		found = tx.Bucket(infoBucket).Get([]byte(store)) != nil
		return nil
	})
	return found, err
}

// ensureInfo gives store, written to at time at, its details when it has
// none.
func ensureInfo(tx *bolt.Tx, store string, at time.Time) error {
	ib := tx.Bucket(infoBucket)
	if ib.Get([]byte(store)) != nil {
		return nil
	}
	return putInfo(ib, implicitStore(store, at))
}

func putInfo(ib *bolt.Bucket, info storeInfo) error {
	v, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return ib.Put([]byte(info.ID), v)
}

func decodeInfo(v []byte) (storeInfo, error) {
	var info storeInfo
	if err := json.Unmarshal(v, &info); err != nil {
		return info, fmt.Errorf("localstore: corrupt store details: %w", err)
	}
	return info, nil
}

func (b *boltBackend) getStore(id string) (*storeInfo, error) {
	var info *storeInfo
	err := b.read(func(tx *bolt.Tx) error {
		v := tx.Bucket(infoBucket).Get([]byte(id))
		if v == nil {
			return nil
		}
		i, err := decodeInfo(v)
		info = &i
		return err
	})
	return info, err
}

func (b *boltBackend) listStores(name, after string, limit int) ([]storeInfo, bool, int, error) {
	var page []storeInfo
	more, total := false, 0
	err := b.read(func(tx *bolt.Tx) error {
		return tx.Bucket(infoBucket).ForEach(func(k, v []byte) error {
			info, err := decodeInfo(v)
			if err != nil {
				return err
			}
			if name != "" && info.Name != name {
				return nil
			}
			total++
			switch {
			case string(k) <= after:
			case len(page) == limit:
				more = true
			default:
				page = append(page, info)
			}
			return nil
		})
	})
	return page, more, total, err
}

func (b *boltBackend) saveStore(info storeInfo, create bool) error {
	return b.write(func(tx *bolt.Tx) error {
		ib := tx.Bucket(infoBucket)
		exists := ib.Get([]byte(info.ID)) != nil
		switch {
		case create && exists:
			return errStoreExists
		case !create && !exists:
			return errNotFound
		}
		err := ib.ForEach(func(k, v []byte) error {
			other, err := decodeInfo(v)
			if err != nil {
				return err
			}
			if string(k) != info.ID && other.Name == info.Name {
				return errNameTaken
			}
			return nil
		})
		if err != nil {
			return err
		}
		return putInfo(ib, info)
	})
}

func (b *boltBackend) deleteStore(id string, now time.Time) error {
	return b.write(func(tx *bolt.Tx) error {
		ib := tx.Bucket(infoBucket)
		if ib.Get([]byte(id)) == nil {
			return errNotFound
		}
		stores := tx.Bucket(storesBucket)
		if sb := stores.Bucket([]byte(id)); sb != nil {
			c := sb.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if exp := expiresAt(v); exp.IsZero() || now.Before(exp) {
					return errNotEmpty
				}
			}
			if err := stores.DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
		return ib.Delete([]byte(id))
	})
}

func (b *boltBackend) close() error { return b.db.Close() }

// read and write are db.View and db.Update for serving. A page damaged
// after the start-up check makes bbolt panic, or fault on a wild page
// reference; both become an error matching ErrDamaged, which the request
// answers with a 500 saying so, instead of the panic reaching the HTTP
// server. A write that fails so is rolled back: bbolt writes the meta page
// last, so the file keeps its last committed state.
func (b *boltBackend) read(fn func(*bolt.Tx) error) error {
	return b.guard(func() error { return b.db.View(fn) })
}

func (b *boltBackend) write(fn func(*bolt.Tx) error) error {
	return b.guard(func() error { return b.db.Update(fn) })
}

func (b *boltBackend) guard(op func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &damagedPageError{path: b.db.Path(), cause: fmt.Sprint(r)}
		}
	}()
	return op()
}

// damagedPageError is a damaged page found while serving.
type damagedPageError struct {
	path, cause string
}

func (e *damagedPageError) Error() string {
	return fmt.Sprintf("localstore: data file %s is damaged: reading it failed: %s; check it with kvlocal -check-data -data %s, "+
		"then restore it from a backup, or move it aside to start with an empty store", e.path, e.cause, filepath.Dir(e.path))
}

func (e *damagedPageError) Is(target error) bool { return target == ErrDamaged }
