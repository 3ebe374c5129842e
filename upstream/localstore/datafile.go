package localstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DataFileName is the local store's data file in its data directory.
const DataFileName = "kv.db"

// DefaultLockTimeout is how long Open waits for the lock on a data
// directory another process holds when Config.LockTimeout is zero.
const DefaultLockTimeout = 2 * time.Second

// ErrDamaged is matched (errors.Is) by the error Open and CheckDataFile
// return for a data file that cannot be served: emptied, truncated, or
// with damaged pages. Such a file is refused, never served nor replaced by
// an empty store, so the items it held are never silently lost.
var ErrDamaged = errors.New("localstore: data file is damaged")

// ErrInUse is matched (errors.Is) by the error Open returns when another
// process (another kvgate or kvlocal) holds the data directory.
var ErrInUse = errors.New("localstore: data directory is in use")

// DamagedError describes a damaged data file and what to do about it.
type DamagedError struct {
	// Path is the data file.
	Path string
	// Problems are what was found wrong, at least one.
	Problems []string
}

func (e *DamagedError) Error() string {
	first, more := "", ""
	if len(e.Problems) > 0 {
		first = e.Problems[0]
	}
	if n := len(e.Problems) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more problems)", n)
	}
	return fmt.Sprintf("localstore: data file %s is damaged: %s%s; the store is not served, so that its items are not lost: "+
		"restore the file from a backup, or move it aside to start with an empty store "+
		"(kvlocal -check-data -data %s lists every problem)", e.Path, first, more, filepath.Dir(e.Path))
}

// Is makes a DamagedError match ErrDamaged.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// inUseError is a data directory whose lock another process holds.
type inUseError struct {
	dir  string
	wait time.Duration
	err  error
}

func (e *inUseError) Error() string {
	return fmt.Sprintf("localstore: data directory %s is in use: another kvgate or kvlocal holds %s (waited %v for its lock); "+
		"stop that one, or give this one another -data directory", e.dir, DataFileName, e.wait)
}

func (e *inUseError) Is(target error) bool { return target == ErrInUse }
func (e *inUseError) Unwrap() error        { return e.err }

// DataReport is what CheckDataFile found in a data file.
type DataReport struct {
	// Path is the data file.
	Path string
	// FileBytes is the file's size.
	FileBytes int64
	// Stores is the number of stores, empty ones included.
	Stores int
	// Items is the number of items in all stores, expired ones not yet
	// removed included; ItemBytes is the bytes of their keys and stored
	// records (value and metadata).
	Items, ItemBytes int64
	// Problems is everything found wrong: empty when the file is sound.
	Problems []string
	// FullCheck is whether bbolt's full consistency check ran: it does not
	// when reading the file failed first, since on the pages reading
	// failed on it could end the process.
	FullCheck bool
}

// Sound reports whether the check found no problem.
func (r *DataReport) Sound() bool { return len(r.Problems) == 0 }

// CheckDataFile checks the data file in dir without changing it: it reads
// every store and item, then runs bbolt's full consistency check, and
// reports what it found. It returns an error, and no report, when the file
// does not exist or another process holds it; a damaged file is a report
// with problems, not an error. It is what kvlocal -check-data runs.
func CheckDataFile(dir string, lockTimeout time.Duration) (*DataReport, error) {
	path := filepath.Join(dir, DataFileName)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("localstore: checking data file: %w", err)
	}
	db, rep, err := openDataFile(path, lockTimeout, true)
	if err != nil {
		var d *DamagedError
		if errors.As(err, &d) {
			return rep, nil
		}
		return nil, err
	}
	return rep, db.Close()
}

// openDataFile opens the bbolt file at path, read-only or for writing,
// and checks it before anything reads or writes it (see inspect). A file
// that does not exist is created (unless readOnly); one that exists but
// is empty is refused, since bbolt would initialise it as a new store. A
// damaged file is refused with a *DamagedError, along with the report;
// another process's lock is an error matching ErrInUse.
func openDataFile(path string, lockTimeout time.Duration, readOnly bool) (*bolt.DB, *DataReport, error) {
	rep := &DataReport{Path: path}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Size() == 0:
		rep.Problems = append(rep.Problems, "the file is empty (0 bytes): it was created for a store and has since been emptied")
		return nil, rep, &DamagedError{Path: path, Problems: rep.Problems}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("localstore: opening data file: %w", err)
	}
	if fi != nil {
		rep.FileBytes = fi.Size()
		if need, ok := metaFileSize(path); ok && need > fi.Size() {
			rep.Problems = append(rep.Problems, truncated(fi.Size(), need))
			return nil, rep, &DamagedError{Path: path, Problems: rep.Problems}
		}
	}
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	db, err := openBoltRecovering(path, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, nil, &inUseError{dir: filepath.Dir(path), wait: lockTimeout, err: err}
		case isDamage(err):
			rep.Problems = append(rep.Problems, err.Error())
			return nil, rep, &DamagedError{Path: path, Problems: rep.Problems}
		}
		return nil, nil, fmt.Errorf("localstore: opening data file %s: %w", path, err)
	}
	inspect(db, rep)
	if !rep.Sound() {
		db.Close()
		return nil, rep, &DamagedError{Path: path, Problems: rep.Problems}
	}
	return db, rep, nil
}

// errPanicked is a panic or memory fault inside bbolt, which it raises on
// a page it cannot make sense of.
var errPanicked = errors.New("the database library failed reading it")

func truncated(size, need int64) string {
	return fmt.Sprintf("the file is truncated: it has %d bytes, its pages reach byte %d", size, need)
}

// metaFileSize reads the size the data file at path must have from its
// meta pages, before bbolt opens it: a truncated file makes bolt.Open
// panic, and a panic inside it leaves the file open and locked (until the
// garbage collector closes it), so it is best found first. It follows
// bbolt's file format (version 2): two meta pages, at offsets 0 and
// pageSize, each a 16-byte page header then the meta, checksummed with
// FNV-64a; bbolt uses the valid one with the higher transaction id, and
// its high water mark (pgid) times the page size is the file's size. ok is
// false when neither meta page is valid, which bolt.Open reports itself.
func metaFileSize(path string) (need int64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	m0, ok0 := readMeta(f, 0)
	second := int64(os.Getpagesize()) // bbolt's page size for a new file
	if ok0 {
		second = int64(m0.pageSize)
	}
	m1, ok1 := readMeta(f, second)
	switch {
	case ok0 && (!ok1 || m0.txid >= m1.txid):
		return m0.fileSize(), true
	case ok1:
		return m1.fileSize(), true
	}
	return 0, false
}

// boltMeta is the part of a bbolt meta page metaFileSize reads.
type boltMeta struct {
	pageSize   uint32
	pgid, txid uint64
}

func (m boltMeta) fileSize() int64 { return int64(m.pgid) * int64(m.pageSize) }

// readMeta reads the meta page at offset, and whether it is valid.
func readMeta(f *os.File, offset int64) (boltMeta, bool) {
	const header = 16 // page id, flags, count, overflow
	buf := make([]byte, header+64)
	if _, err := f.ReadAt(buf, offset); err != nil {
		return boltMeta{}, false
	}
	m, ne := buf[header:], binary.NativeEndian // bbolt writes its pages in the machine's byte order
	h := fnv.New64a()
	h.Write(m[:56])
	meta := boltMeta{pageSize: ne.Uint32(m[8:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}
	valid := ne.Uint32(m[0:]) == 0xED0CDAED && ne.Uint32(m[4:]) == 2 && ne.Uint64(m[56:]) == h.Sum64() && meta.pageSize > 0
	return meta, valid
}

// openBoltRecovering is bolt.Open turning a panic, or a memory fault (bbolt
// maps the file, and reading a page past the end of a truncated file is a
// fault, not an error), into an error.
func openBoltRecovering(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", errPanicked, r)
		}
	}()
	return bolt.Open(path, 0o600, opts)
}

// isDamage tells the errors of bolt.Open that come from the file's
// contents from those of its environment (permissions, memory).
func isDamage(err error) bool {
	return errors.Is(err, errPanicked) || errors.Is(err, berrors.ErrInvalid) ||
		errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrChecksum) ||
		strings.Contains(err.Error(), "file size too small")
}

// inspect checks an open data file and fills rep: that the file holds all
// the pages its meta page counts, then that every store and item reads
// back (on this goroutine, with panics and memory faults recovered), then
// bbolt's full consistency check (tx.Check: page types, references, key
// order, the freelist). The reading comes first because bbolt runs Check
// on a goroutine of its own, where a fault on a wild page reference would
// end the process; once every page has been read here, Check reads
// nothing new.
//
// The whole inspection runs at every start. Its cost, measured on one
// store of small items with a warm page cache: about 5 ms for 100,000
// items (a 16 MiB file) and 75 ms for 1,000,000 (173 MiB), reading
// included; it grows with the file, and a cold cache adds reading the
// file from disk once.
func inspect(db *bolt.DB, rep *DataReport) {
	fi, err := os.Stat(db.Path())
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return
	}
	rep.FileBytes = fi.Size()
	err = viewRecovering(db, func(tx *bolt.Tx) error {
		if need := tx.Size(); need > rep.FileBytes {
			return errors.New(truncated(rep.FileBytes, need))
		}
		countItems(tx, rep)
		return nil
	})
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return
	}
	rep.FullCheck = true
	_ = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() { // drained to the end: Check's goroutine ends when it has sent everything
			rep.Problems = append(rep.Problems, "consistency check: "+err.Error())
		}
		return nil
	})
}

// countItems reads every store and item, counting them. A file bbolt opens
// but that kvgate never initialised (no stores bucket) has none.
func countItems(tx *bolt.Tx, rep *DataReport) {
	if ib := tx.Bucket(infoBucket); ib != nil {
		_ = ib.ForEach(func(k, v []byte) error {
			rep.Stores++
			return nil
		})
	}
	stores := tx.Bucket(storesBucket)
	if stores == nil {
		return
	}
	_ = stores.ForEachBucket(func(id []byte) error {
		return stores.Bucket(id).ForEach(func(k, v []byte) error {
			rep.Items++
			rep.ItemBytes += int64(len(k) + len(v))
			return nil
		})
	})
	if mb := tx.Bucket(metaBucket); mb != nil {
		_ = mb.ForEach(func(k, v []byte) error { return nil })
	}
}

// viewRecovering is db.View turning a panic or a memory fault inside fn
// into an error.
func viewRecovering(db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPanicked, r)
		}
	}()
	return db.View(fn)
}
