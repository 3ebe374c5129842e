package seedfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/seedfile"
)

// writeFiles writes name: content files into a new directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadFastlyTOML(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []seedfile.Store
	}{
		{
			name: "inline array with data, file and metadata",
			files: map[string]string{
				"fastly.toml": `
manifest_version = 3
name = "app"

[local_server.kv_stores]
my_store = [
  { key = "first", data = "This is some data" },
  { key = "second", file = "assets/second.txt", metadata = "md2" },
]
`,
				"assets/second.txt": "from a file",
			},
			want: []seedfile.Store{{Name: "my_store", Items: []seedfile.Item{
				{Key: "first", Value: []byte("This is some data")},
				{Key: "second", Value: []byte("from a file"), Metadata: "md2"},
			}}},
		},
		{
			name: "array of tables",
			files: map[string]string{"fastly.toml": `
[[local_server.kv_stores.tabled]]
key = "k"
data = "v"
metadata = "m"
`},
			want: []seedfile.Store{{Name: "tabled", Items: []seedfile.Item{{Key: "k", Value: []byte("v"), Metadata: "m"}}}},
		},
		{
			name: "json file, both entry forms, stores in name order",
			files: map[string]string{
				"fastly.toml": `
[local_server.kv_stores]
b_store = { file = "data/kv.json", format = "json" }
a_store = [{ key = "x", data = "y" }]
`,
				"data/kv.json":  `{"plain": "data", "rich": {"data": "d", "metadata": "md"}, "filed": {"file": "blob.bin", "metadata": "fm"}}`,
				"data/blob.bin": "bytes",
			},
			want: []seedfile.Store{
				{Name: "a_store", Items: []seedfile.Item{{Key: "x", Value: []byte("y")}}},
				{Name: "b_store", Items: []seedfile.Item{
					{Key: "filed", Value: []byte("bytes"), Metadata: "fm"},
					{Key: "plain", Value: []byte("data")},
					{Key: "rich", Value: []byte("d"), Metadata: "md"},
				}},
			},
		},
		{
			name:  "no kv stores",
			files: map[string]string{"fastly.toml": "name = \"app\"\n"},
			want:  []seedfile.Store{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, tc.files)
			got, err := seedfile.ReadFastlyTOML(filepath.Join(dir, "fastly.toml"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReadFastlyTOMLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		// want are the parts of the error message, after the file's path.
		want []string
	}{
		{"bad toml", map[string]string{"fastly.toml": "name = \"app\"\n[local_server.kv_stores]\ns = [{ key = }]\n"}, []string{"fastly.toml: toml: line 3"}},
		{"missing data file", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = [{ key = "k", file = "nope.txt" }]`}, []string{`fastly.toml: store "s": key "k":`, "nope.txt"}},
		{"both data and file", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = [{ key = "k", data = "d", file = "f" }]`}, []string{`fastly.toml: store "s": key "k": want exactly one of "data" and "file"`}},
		{"neither data nor file", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = [{ key = "k" }]`}, []string{`store "s": key "k": want exactly one`}},
		{"entry without key", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = [{ key = "a", data = "1" }, { data = "2" }]`}, []string{`store "s": entry 2: no key`}},
		{"missing json file", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = { file = "kv.json", format = "json" }`}, []string{`fastly.toml: store "s":`, "kv.json"}},
		{"unknown format", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = { file = "kv.json", format = "yaml" }`}, []string{`store "s": format "yaml"`}},
		{"bad json entry", map[string]string{
			"fastly.toml": `[local_server.kv_stores]
s = { file = "kv.json", format = "json" }`,
			"kv.json": `{"good": "x", "bad": {"data": "d", "file": "f"}}`,
		}, []string{`fastly.toml: store "s": `, `kv.json: key "bad": want exactly one`}},
		{"json not an object", map[string]string{
			"fastly.toml": `[local_server.kv_stores]
s = { file = "kv.json", format = "json" }`,
			"kv.json": `["a"]`,
		}, []string{`kv.json: not a Viceroy JSON object`}},
		{"store of the wrong type", map[string]string{"fastly.toml": `[local_server.kv_stores]
s = "x"`}, []string{`store "s": want an array of items`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, tc.files)
			path := filepath.Join(dir, "fastly.toml")
			_, err := seedfile.ReadFastlyTOML(path)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), dir) {
				t.Errorf("error %q does not start with the file's directory", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestNDJSON(t *testing.T) {
	t.Parallel()
	in := `{"key":"a","value":"aGk=","metadata":"m","time_to_live_sec":60,"background_fetch":true}

{"key":"b","value":""}
not json
{"value":"aGk="}
{"key":"c","value":"!!"}
{"key":"d","value":"eQ=="}
`
	r := seedfile.NewNDJSON(strings.NewReader(in), "items.ndjson")
	type result struct {
		item seedfile.Item
		err  string
	}
	want := []result{
		{item: seedfile.Item{Key: "a", Value: []byte("hi"), Metadata: "m", TTL: time.Minute, BackgroundFetch: true, Line: 1}},
		{item: seedfile.Item{Key: "b", Value: []byte{}, Line: 3}},
		{err: "items.ndjson:4: invalid character"},
		{err: `items.ndjson:5: no "key"`},
		{err: "items.ndjson:6: value is not standard base64"},
		{item: seedfile.Item{Key: "d", Value: []byte("y"), Line: 7}},
	}
	for i, w := range want {
		it, err := r.Next()
		if w.err != "" {
			var se *seedfile.Error
			if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), w.err) {
				t.Errorf("item %d: error %v, want one starting %q", i, err, w.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(it, w.item) {
			t.Errorf("item %d: %+v, %v; want %+v", i, it, err, w.item)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last line: %v, want io.EOF", err)
	}
}
