package cassette_test

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/cassette"
	"github.com/kvgate/kvgate/internal/kvtest"
)

// sample mirrors the shapes the Fastly recordings use: a document marker,
// quoted and unquoted header values, a block-scalar body with an indented
// second line, and an empty form.
const sample = `---
version: 1
interactions:
- request:
    body: |-
      {"key":"a"}
          {"key":"b"}
    form: {}
    headers:
      Content-Type:
      - application/x-ndjson
      If-Generation-Match:
      - "1750707679010223"
    url: https://api.fastly.com/resources/stores/kv/s/keys?cursor=Cgs%3D&limit=4
    method: PUT
  response:
    body: ""
    headers:
      Content-Length:
      - "0"
      X-Cache-Hits:
      - 0, 0
      Metadata:
      - ""
    status: 412 Precondition Failed
    code: 412
    duration: ""
`

func TestParse(t *testing.T) {
	t.Parallel()
	c, err := cassette.Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Interactions) != 1 {
		t.Fatalf("got %d interactions, want 1", len(c.Interactions))
	}
	in := c.Interactions[0]
	if want := "{\"key\":\"a\"}\n    {\"key\":\"b\"}"; in.Request.Body != want {
		t.Errorf("request body = %q, want %q", in.Request.Body, want)
	}
	if got := in.Request.Headers.Get("If-Generation-Match"); got != "1750707679010223" {
		t.Errorf("If-Generation-Match = %q", got)
	}
	u, err := in.Request.ParsedURL()
	if err != nil {
		t.Fatal(err)
	}
	// The raw query must survive as recorded: the %3D is what went on the wire.
	if u.RawQuery != "cursor=Cgs%3D&limit=4" || u.EscapedPath() != "/resources/stores/kv/s/keys" {
		t.Errorf("URL parsed as path %q query %q", u.EscapedPath(), u.RawQuery)
	}
	want := http.Header{"Content-Length": {"0"}, "X-Cache-Hits": {"0, 0"}, "Metadata": {""}}
	if !reflect.DeepEqual(in.Response.Headers, want) {
		t.Errorf("response headers = %q, want %q", in.Response.Headers, want)
	}
	// A header recorded as the empty string is present, not absent.
	if _, ok := in.Response.Headers["Metadata"]; !ok {
		t.Error(`Metadata: "" was lost`)
	}
	if in.Response.Code != 412 || in.Response.Status != "412 Precondition Failed" || in.Response.Body != "" {
		t.Errorf("response = %d %q body %q", in.Response.Code, in.Response.Status, in.Response.Body)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, errContains string
	}{
		{"wrong version", strings.Replace(sample, "version: 1", "version: 2", 1), "version 2"},
		{"unknown field", strings.Replace(sample, "duration:", "took:", 1), "took"},
		{"no interactions", "version: 1\ninteractions: []\n", "no interactions"},
		{"no method", strings.Replace(sample, "method: PUT", "method: \"\"", 1), "method"},
		{"bad code", strings.Replace(sample, "code: 412", "code: 0", 1), "code 0"},
		{"not YAML", "version: [", "parsing YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := cassette.Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.errContains) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.errContains)
			}
		})
	}
}

// TestLoadRecordings loads every shared recording in place, so a fixture
// the loader cannot read fails here rather than deep inside a fidelity test.
func TestLoadRecordings(t *testing.T) {
	t.Parallel()
	root := filepath.Join(kvtest.SharedDir(t), "fixtures", "fastly-recorded")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		n++
		c, err := cassette.Load(path)
		if err != nil {
			t.Error(err)
			return nil
		}
		for i, in := range c.Interactions {
			// The recorder strips the token; a recording holding one must
			// not be replayed (or committed) as is.
			if _, ok := in.Request.Headers["Fastly-Key"]; ok {
				t.Errorf("%s interaction %d carries a Fastly-Key header", path, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no recordings under %s", root)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	if _, err := cassette.Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}
