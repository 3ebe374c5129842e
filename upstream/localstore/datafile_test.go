package localstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testItems is the number of items writeDataFile writes: enough for a
// tree of many pages, so that a middle page holds items.
const testItems = 3000

// writeDataFile writes a sound data file of testItems items in one store
// in a new directory, and returns the directory.
func writeDataFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := openBolt(dir, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, testItems)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%06d", i)
	}
	err = b.putBatch("store1", keys, func(i int, gen uint64) *record {
		return &record{Generation: gen + 1, Modified: time.Now(), Value: []byte(fmt.Sprintf("value of %s", keys[i]))}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// damage is one way a data file is damaged.
type damage func(t *testing.T, path string)

func truncateTo(size int64) damage {
	return func(t *testing.T, path string) {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
}

// scribbleMiddlePage writes random bytes over the page in the middle of
// the file.
func scribbleMiddlePage(t *testing.T, path string) {
	const pageSize = 4096
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, pageSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	page := fi.Size() / pageSize / 2
	if _, err := f.WriteAt(junk, page*pageSize); err != nil {
		t.Fatal(err)
	}
}

var damages = []struct {
	name    string
	damage  damage
	problem string // in the error
}{
	{"truncated to 12 KiB", truncateTo(12 << 10), ""},
	{"scribbled middle page", scribbleMiddlePage, ""},
	{"emptied", truncateTo(0), "is empty (0 bytes)"},
}

func TestOpenRefusesDamagedDataFile(t *testing.T) {
	t.Parallel()
	for _, tc := range damages {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDataFile(t)
			path := filepath.Join(dir, DataFileName)
			tc.damage(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(Config{Dir: dir})
			if err == nil {
				s.Close()
				t.Fatal("Open served a damaged data file")
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open error %v does not match ErrDamaged", err)
			}
			for _, want := range []string{path, "damaged", "backup", "move it aside", "-check-data", tc.problem} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error %q lacks %q", err, want)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("Open changed the damaged data file")
			}
		})
	}
}

func TestOpenDataFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		dir       func(t *testing.T) string
		wantItems bool
	}{
		{"sound", writeDataFile, true},
		{"never existed", func(t *testing.T) string { return filepath.Join(t.TempDir(), "new") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tc.dir(t)
			s, err := Open(Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rec, err := s.backend.get("store1", "key-000042")
			if err != nil {
				t.Fatal(err)
			}
			if got := rec != nil; got != tc.wantItems {
				t.Fatalf("item found: %v, want %v", got, tc.wantItems)
			}
		})
	}
}

func TestOpenDataDirInUse(t *testing.T) {
	t.Parallel()
	dir := writeDataFile(t)
	first, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	s, err := Open(Config{Dir: dir, LockTimeout: 50 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("a second Open of a data directory in use succeeded")
	}
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("error %v does not match ErrInUse", err)
	}
	for _, want := range []string{dir, "in use", "another kvgate or kvlocal"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestCheckDataFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage damage
		sound  bool
	}{{name: "sound", sound: true}}
	for _, d := range damages {
		tests = append(tests, struct {
			name   string
			damage damage
			sound  bool
		}{d.name, d.damage, false})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDataFile(t)
			if tc.damage != nil {
				tc.damage(t, filepath.Join(dir, DataFileName))
			}
			rep, err := CheckDataFile(dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Sound() != tc.sound {
				t.Fatalf("Sound() = %v, want %v; problems: %q", rep.Sound(), tc.sound, rep.Problems)
			}
			if rep.FullCheck != tc.sound {
				t.Errorf("FullCheck = %v, want %v (the full check runs when reading succeeded)", rep.FullCheck, tc.sound)
			}
			if tc.sound && (rep.Stores != 1 || rep.Items != testItems || rep.ItemBytes == 0 || rep.FileBytes == 0) {
				t.Errorf("report %+v, want 1 store of %d items", rep, testItems)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		if _, err := CheckDataFile(t.TempDir(), 0); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("error %v, want one matching os.ErrNotExist", err)
		}
	})
}

// TestServingDamagedPage damages the data file under a store that is
// serving it, past the start-up check: every request that reads the
// damaged pages answers 500 saying the data file is damaged.
func TestServingDamagedPage(t *testing.T) {
	t.Parallel()
	dir := writeDataFile(t)
	path := filepath.Join(dir, DataFileName)
	s, err := Open(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt maps the file shared, so what is written to it is what the
	// store reads next. Everything after the two meta pages is scribbled.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, fi.Size()-2*4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	if _, err := f.WriteAt(junk, 2*4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for _, target := range []string{
		"/resources/stores/kv/store1/keys/key-000042",
		"/resources/stores/kv/store1/keys",
		"/resources/stores/kv",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("GET %s: %d %s, want 500", target, rec.Code, rec.Body)
			continue
		}
		var body struct{ Msg, Detail string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: body %q: %v", target, rec.Body, err)
		}
		if !strings.Contains(body.Detail, "data file is damaged") || !strings.Contains(body.Detail, "kvlocal -check-data") {
			t.Errorf("GET %s: detail %q does not say the data file is damaged and how to check it", target, body.Detail)
		}
	}
}
