package seedfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// ViceroyJSON reads a Viceroy local-store JSON object: each key maps to
// its data as a string, or to {"data": "...", "metadata": "..."} or
// {"file": "path", "metadata": "..."}, with exactly one of data and file.
// A relative file path is relative to the JSON file's directory. Items
// come in key order.
type ViceroyJSON struct {
	file    string
	base    string
	keys    []string
	entries map[string]json.RawMessage
	next    int
}

// OpenViceroyJSON reads the JSON object in path. A file that cannot be
// read is the os error; one that is not a JSON object is an *Error.
func OpenViceroyJSON(path string) (*ViceroyJSON, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, &Error{File: path, Err: fmt.Errorf("not a Viceroy JSON object: %w", err)}
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return &ViceroyJSON{file: path, base: filepath.Dir(path), keys: keys, entries: entries}, nil
}

// Next returns the next item; io.EOF after the last. A key whose entry is
// not an item is an *Error naming it, and the next call goes on past it.
func (v *ViceroyJSON) Next() (Item, error) {
	if v.next == len(v.keys) {
		return Item{}, io.EOF
	}
	key := v.keys[v.next]
	v.next++
	item, err := viceroyItem(v.base, key, v.entries[key])
	if err != nil {
		return Item{}, &Error{File: v.file, Key: key, Err: err}
	}
	return item, nil
}

// viceroyEntry is a Viceroy local-store JSON value in its object form.
type viceroyEntry struct {
	Data     *string `json:"data"`
	File     *string `json:"file"`
	Metadata string  `json:"metadata"`
}

func viceroyItem(base, key string, raw json.RawMessage) (Item, error) {
	var data string
	if json.Unmarshal(raw, &data) == nil {
		return Item{Key: key, Value: []byte(data)}, nil
	}
	var e viceroyEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Item{}, errors.New(`want a string or {"data"|"file","metadata"}`)
	}
	return entryItem(base, key, e.Data, e.File, e.Metadata)
}

// entryItem is the item of an entry with data or a file (relative to
// base), as both Viceroy's JSON and fastly.toml's inline arrays have.
func entryItem(base, key string, data, file *string, metadata string) (Item, error) {
	switch {
	case (data == nil) == (file == nil):
		return Item{}, errors.New(`want exactly one of "data" and "file"`)
	case data != nil:
		return Item{Key: key, Value: []byte(*data), Metadata: metadata}, nil
	}
	value, err := os.ReadFile(relativeTo(base, *file))
	if err != nil {
		return Item{}, err
	}
	return Item{Key: key, Value: value, Metadata: metadata}, nil
}

func relativeTo(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}
