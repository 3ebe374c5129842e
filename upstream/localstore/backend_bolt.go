package localstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
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
)

// boltBackend keeps items in a bbolt file: one file, crash-safe
// transactions, ordered keys, and no server to run.
type boltBackend struct {
	db *bolt.DB
}

func openBolt(dir string) (*boltBackend, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("localstore: creating data directory: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "kv.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("localstore: opening database in %s: %w", dir, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(storesBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("localstore: initialising database: %w", err)
	}
	return &boltBackend{db: db}, nil
}

func (b *boltBackend) get(store, key string) (*record, error) {
	var rec *record
	err := b.db.View(func(tx *bolt.Tx) error {
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
	return b.db.Update(func(tx *bolt.Tx) error {
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
	return b.db.Update(func(tx *bolt.Tx) error {
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
	err := b.db.View(func(tx *bolt.Tx) error {
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
	err := b.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(storesBucket).Bucket([]byte(store)) != nil
		return nil
	})
	return found, err
}

func (b *boltBackend) close() error { return b.db.Close() }
