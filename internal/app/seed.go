package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvgate/kvgate/internal/seedfile"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// Seed is one -seed value: a fastly.toml whose [local_server.kv_stores]
// are all loaded (Store empty), or an NDJSON file of Fastly's batch format
// loaded into the store named Store.
type Seed struct {
	Store string
	Path  string
}

// ParseSeed reads NAME=PATH (an NDJSON file for the store NAME) or PATH (a
// fastly.toml). A value is NAME=PATH when it has an '=' with no path
// separator before it, so that a fastly.toml under a directory whose name
// holds '=' is still a path.
func ParseSeed(v string) (Seed, error) {
	if name, path, ok := strings.Cut(v, "="); ok && !strings.ContainsAny(name, `/`+string(filepath.Separator)) {
		if name == "" || path == "" {
			return Seed{}, fmt.Errorf("seed %q: want NAME=items.ndjson or path/fastly.toml", v)
		}
		return Seed{Store: name, Path: path}, nil
	}
	if v == "" {
		return Seed{}, errors.New("seed: empty path")
	}
	return Seed{Path: v}, nil
}

// seedFlag is the repeatable -seed flag. Its first use replaces the seeds
// KVGATE_SEED named, as every other flag replaces its variable.
type seedFlag struct {
	seeds   *[]Seed
	fromEnv bool
}

func (f *seedFlag) String() string {
	if f == nil || f.seeds == nil {
		return ""
	}
	parts := make([]string, len(*f.seeds))
	for i, s := range *f.seeds {
		parts[i] = s.Path
		if s.Store != "" {
			parts[i] = s.Store + "=" + s.Path
		}
	}
	return strings.Join(parts, string(filepath.ListSeparator))
}

func (f *seedFlag) Set(v string) error {
	s, err := ParseSeed(v)
	if err != nil {
		return err
	}
	if f.fromEnv {
		*f.seeds, f.fromEnv = nil, false
	}
	*f.seeds = append(*f.seeds, s)
	return nil
}

// seedEnv reads KVGATE_SEED: seeds separated as PATH's entries are (':'
// on Unix, ';' on Windows), since paths hold commas more often.
func seedEnv(env *envReader) ([]Seed, error) {
	var seeds []Seed
	for _, v := range filepath.SplitList(env.getenv("KVGATE_SEED")) {
		if v == "" {
			continue
		}
		s, err := ParseSeed(v)
		if err != nil {
			return nil, fmt.Errorf("KVGATE_SEED: %w", err)
		}
		seeds = append(seeds, s)
	}
	return seeds, nil
}

// seedStore is the items one store gets from the seed files.
type seedStore struct {
	name  string
	file  string
	items []seedfile.Item
	// toml says the store came from a fastly.toml, whose errors name it.
	toml bool
}

// readSeeds reads every seed file; the first bad one is the error, naming
// the file and the line or key.
func readSeeds(seeds []Seed) ([]seedStore, error) {
	var out []seedStore
	for _, s := range seeds {
		if s.Store == "" {
			stores, err := seedfile.ReadFastlyTOML(s.Path)
			if err != nil {
				return nil, fmt.Errorf("seed: %w", err)
			}
			for _, st := range stores {
				out = append(out, seedStore{name: st.Name, file: s.Path, items: st.Items, toml: true})
			}
			continue
		}
		items, err := readNDJSONFile(s.Path)
		if err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
		out = append(out, seedStore{name: s.Store, file: s.Path, items: items})
	}
	return out, nil
}

func readNDJSONFile(path string) ([]seedfile.Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := seedfile.NewNDJSON(f, path)
	var items []seedfile.Item
	for {
		it, err := r.Next()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
}

// seedLocalStore writes what the seed files hold into store, each store
// found by name or created (see [localstore.Store.OpenStoreNamed]). Every
// file is read before anything is written. Each item overwrites its key,
// so seeding again leaves the same items (with new generations).
func seedLocalStore(store *localstore.Store, seeds []Seed, logger *slog.Logger) error {
	if len(seeds) == 0 {
		return nil
	}
	stores, err := readSeeds(seeds)
	if err != nil {
		return err
	}
	for _, st := range stores {
		id, created, err := store.OpenStoreNamed(st.name)
		if err != nil {
			return fmt.Errorf("seed: %s: store %q: %w", st.file, st.name, err)
		}
		items := make([]localstore.Item, len(st.items))
		for i, it := range st.items {
			items[i] = localstore.Item{Key: it.Key, Value: it.Value, Metadata: it.Metadata, TTL: it.TTL}
		}
		if err := store.PutItems(id, items); err != nil {
			var ie *localstore.ItemError
			if errors.As(err, &ie) {
				e := &seedfile.Error{File: st.file, Line: st.items[ie.Index].Line, Key: ie.Key, Err: ie.Err}
				if st.toml {
					e.Store = st.name
				}
				return fmt.Errorf("seed: %w", e)
			}
			return fmt.Errorf("seed: %s: store %q: %w", st.file, st.name, err)
		}
		logger.Info("seeded the local store", "store_id", id, "store_name", st.name,
			"created", created, "items", len(items), "file", st.file)
	}
	return nil
}
