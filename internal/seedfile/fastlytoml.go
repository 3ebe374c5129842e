package seedfile

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/BurntSushi/toml"
)

// Store is one store a fastly.toml names, with its items.
type Store struct {
	Name  string
	Items []Item
}

// fastlyManifest is the part of fastly.toml the local server's KV stores
// are in; every other section is left alone.
type fastlyManifest struct {
	LocalServer struct {
		KVStores map[string]toml.Primitive `toml:"kv_stores"`
	} `toml:"local_server"`
}

// tomlEntry is one item of a store's inline array.
type tomlEntry struct {
	Key      *string `toml:"key"`
	Data     *string `toml:"data"`
	File     *string `toml:"file"`
	Metadata string  `toml:"metadata"`
}

// tomlFileRef is a store kept in a JSON file of Viceroy's form.
type tomlFileRef struct {
	File   string `toml:"file"`
	Format string `toml:"format"`
}

// ReadFastlyTOML reads every store of path's [local_server.kv_stores], in
// name order. A store is an array of {key, data|file, metadata} tables,
// or a table {file = "x.json", format = "json"} naming a Viceroy JSON
// object ([OpenViceroyJSON]); file paths are relative to the file naming
// them. The first entry that is not an item fails the whole file, with an
// *Error naming the store and the key (or the entry's position when it
// has no key).
func ReadFastlyTOML(path string) ([]Store, error) {
	var m fastlyManifest
	md, err := toml.DecodeFile(path, &m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Err: err}
		}
		return nil, err
	}
	base := filepath.Dir(path)
	names := make([]string, 0, len(m.LocalServer.KVStores))
	for name := range m.LocalServer.KVStores {
		names = append(names, name)
	}
	slices.Sort(names)
	stores := make([]Store, 0, len(names))
	for _, name := range names {
		prim := m.LocalServer.KVStores[name]
		st := Store{Name: name}
		switch typ := md.Type("local_server", "kv_stores", name); typ {
		case "Array", "ArrayHash":
			var entries []tomlEntry
			if err := md.PrimitiveDecode(prim, &entries); err != nil {
				return nil, &Error{File: path, Store: name, Err: err}
			}
			for i, e := range entries {
				if e.Key == nil {
					return nil, &Error{File: path, Store: name, Err: fmt.Errorf("entry %d: no key", i+1)}
				}
				item, err := entryItem(base, *e.Key, e.Data, e.File, e.Metadata)
				if err != nil {
					return nil, &Error{File: path, Store: name, Key: *e.Key, Err: err}
				}
				st.Items = append(st.Items, item)
			}
		case "Hash":
			var ref tomlFileRef
			if err := md.PrimitiveDecode(prim, &ref); err != nil {
				return nil, &Error{File: path, Store: name, Err: err}
			}
			if ref.File == "" {
				return nil, &Error{File: path, Store: name, Err: errors.New(`want an array of items or {file = "...", format = "json"}`)}
			}
			if ref.Format != "json" {
				return nil, &Error{File: path, Store: name, Err: fmt.Errorf(`format %q: only "json" is known`, ref.Format)}
			}
			if st.Items, err = readViceroyJSON(relativeTo(base, ref.File)); err != nil {
				return nil, &Error{File: path, Store: name, Err: err}
			}
		default:
			return nil, &Error{File: path, Store: name, Err: fmt.Errorf(`want an array of items or {file = "...", format = "json"}, not %s`, typ)}
		}
		stores = append(stores, st)
	}
	return stores, nil
}

// readViceroyJSON reads all of a Viceroy JSON file, failing on its first
// bad entry.
func readViceroyJSON(path string) ([]Item, error) {
	v, err := OpenViceroyJSON(path)
	if err != nil {
		return nil, err
	}
	var items []Item
	for {
		item, err := v.Next()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		items = append(items, item)
	}
}
