package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

const wireToken = "test-token"

// seenRequest is what the fake Fastly saw of one request. RequestURI is the
// request target exactly as it came over the wire, so escaping is checked
// on the bytes Fastly would see, not on Go's decoded view.
type seenRequest struct {
	Method     string
	RequestURI string
	Path       string // decoded
	RawQuery   string
	Query      url.Values
	Header     http.Header
	Body       []byte
}

// wireFake is an httptest server that records every request and answers
// with a per-test handler (or a plausible Fastly success when nil).
type wireFake struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []seenRequest
	handler http.HandlerFunc
}

func newWireFake(t *testing.T, handler http.HandlerFunc) *wireFake {
	t.Helper()
	f := &wireFake{handler: handler}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seenRequest{
			Method:     r.Method,
			RequestURI: r.RequestURI,
			Path:       r.URL.Path,
			RawQuery:   r.URL.RawQuery,
			Query:      r.URL.Query(),
			Header:     r.Header.Clone(),
			Body:       body,
		})
		f.mu.Unlock()
		if f.handler != nil {
			f.handler(w, r)
			return
		}
		answerLikeFastly(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// answerLikeFastly answers like Fastly does on success: GET with the item
// headers, PUT 200 with an empty body, DELETE 204, list a JSON page.
func answerLikeFastly(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/keys"):
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":["a","b"],"meta":{"limit":1000}}`)
	case r.Method == http.MethodGet:
		w.Header().Set("Generation", "1750707679010222")
		w.Header()["Metadata"] = []string{""}
		_, _ = io.WriteString(w, "value")
	case r.Method == http.MethodPut:
		w.Header().Set("Content-Length", "0")
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// only returns the single request the fake received.
func (f *wireFake) only(t *testing.T) seenRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 1 {
		t.Fatalf("fake received %d requests, want 1", len(f.reqs))
	}
	return f.reqs[0]
}

// client returns a Client for the fake. It uses NewHTTPClient so the tests
// exercise the production transport settings (redirects not followed).
func (f *wireFake) client(t *testing.T, mutate func(*upstream.ClientConfig)) *upstream.Client {
	t.Helper()
	hc := upstream.NewHTTPClient(4)
	t.Cleanup(hc.CloseIdleConnections)
	cfg := upstream.ClientConfig{BaseURL: f.srv.URL, Token: wireToken, HTTPClient: hc}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := upstream.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// clientCall is one client call, for tables that run every operation.
type clientCall struct {
	name string
	op   upstream.Op
	do   func(ctx context.Context, c *upstream.Client, store, key string) error
}

var clientCalls = []clientCall{
	{"get", upstream.OpGet, func(ctx context.Context, c *upstream.Client, s, k string) error {
		_, err := c.GetItem(ctx, s, k)
		return err
	}},
	{"put", upstream.OpPut, func(ctx context.Context, c *upstream.Client, s, k string) error {
		return c.PutItem(ctx, s, k, []byte("v"), upstream.PutOptions{})
	}},
	{"delete", upstream.OpDelete, func(ctx context.Context, c *upstream.Client, s, k string) error {
		return c.DeleteItem(ctx, s, k, upstream.DeleteOptions{})
	}},
	{"list", upstream.OpList, func(ctx context.Context, c *upstream.Client, s, _ string) error {
		_, err := c.ListKeys(ctx, s, upstream.ListOptions{})
		return err
	}},
}

// TestKeyPathEscaping checks that a key travels as one escaped path segment
// on GET, PUT and DELETE: a '/' inside a key must not become a path
// separator, and '%' must not be read as an escape (reference §1).
func TestKeyPathEscaping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		store, key string
		wantPath   string // escaped, as on the wire
	}{
		{"s", "a/b c%", "/resources/stores/kv/s/keys/a%2Fb%20c%25"},
		{"s", "simple", "/resources/stores/kv/s/keys/simple"},
		{"s", "users/42/profile", "/resources/stores/kv/s/keys/users%2F42%2Fprofile"},
		{"s", "a:b", "/resources/stores/kv/s/keys/a:b"},
		{"s", "x*", "/resources/stores/kv/s/keys/x%2A"},
		{"s", "[k]", "/resources/stores/kv/s/keys/%5Bk%5D"},
		{"s", "a+b=c", "/resources/stores/kv/s/keys/a+b=c"},
		{"s", "ключ", "/resources/stores/kv/s/keys/%D0%BA%D0%BB%D1%8E%D1%87"},
		{"s", "a//b", "/resources/stores/kv/s/keys/a%2F%2Fb"},
		// The store id is escaped the same way.
		{"st/ore id", "k", "/resources/stores/kv/st%2Fore%20id/keys/k"},
	}
	for _, tt := range tests {
		for _, c := range clientCalls[:3] { // the item calls
			t.Run(c.name+"/"+tt.key, func(t *testing.T) {
				t.Parallel()
				f := newWireFake(t, nil)
				if err := c.do(t.Context(), f.client(t, nil), tt.store, tt.key); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				got := f.only(t)
				if got.RequestURI != tt.wantPath {
					t.Errorf("request target = %q, want %q", got.RequestURI, tt.wantPath)
				}
				// The server must decode it back to exactly the key.
				wantDecoded := "/resources/stores/kv/" + tt.store + "/keys/" + tt.key
				if got.Path != wantDecoded {
					t.Errorf("decoded path = %q, want %q", got.Path, wantDecoded)
				}
			})
		}
	}
}

// TestPutWireForm checks every PutOptions field's wire form, and that an
// option that is not set is not sent at all (Fastly gives a meaning to the
// mere presence of some of them, e.g. an empty metadata header).
func TestPutWireForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      upstream.PutOptions
		wantQuery string // raw query, exact
		wantGen   string // If-Generation-Match; "" means absent
		wantMeta  string // Metadata; "" means absent
		wantTTL   string // time_to_live_sec; "" means absent
	}{
		{name: "overwrite sends nothing extra"},
		{name: "add", opts: upstream.PutOptions{Mode: upstream.PutAdd}, wantQuery: "add=true"},
		{name: "append", opts: upstream.PutOptions{Mode: upstream.PutAppend}, wantQuery: "append=true"},
		{name: "prepend", opts: upstream.PutOptions{Mode: upstream.PutPrepend}, wantQuery: "prepend=true"},
		{name: "background fetch", opts: upstream.PutOptions{BackgroundFetch: true}, wantQuery: "background_fetch=true"},
		{name: "add with background fetch", opts: upstream.PutOptions{Mode: upstream.PutAdd, BackgroundFetch: true}, wantQuery: "add=true&background_fetch=true"},
		// Generation 0 is a real condition ("must not exist"), so a set
		// pointer to 0 must be sent, unlike go-fastly's "send when ≠0".
		{name: "generation zero", opts: upstream.PutOptions{IfGenerationMatch: new(uint64(0))}, wantGen: "0"},
		{name: "recorded generation", opts: upstream.PutOptions{IfGenerationMatch: new(uint64(1750707679010223))}, wantGen: "1750707679010223"},
		// The SDKs type this as i32 (reference §0.13); the full u64 range
		// must survive.
		{name: "max generation", opts: upstream.PutOptions{IfGenerationMatch: new(uint64(18446744073709551615))}, wantGen: "18446744073709551615"},
		{name: "metadata", opts: upstream.PutOptions{Metadata: "meta"}, wantMeta: "meta"},
		{name: "metadata with spaces and unicode", opts: upstream.PutOptions{Metadata: `{"k": "ключ"}`}, wantMeta: `{"k": "ключ"}`},
		{name: "ttl whole seconds", opts: upstream.PutOptions{TimeToLive: time.Minute}, wantTTL: "60"},
		{name: "ttl rounded up to seconds", opts: upstream.PutOptions{TimeToLive: 90*time.Second + 500*time.Millisecond}, wantTTL: "91"},
		{name: "ttl below a second is one second", opts: upstream.PutOptions{TimeToLive: 500 * time.Millisecond}, wantTTL: "1"},
		{name: "negative ttl is not sent", opts: upstream.PutOptions{TimeToLive: -time.Second}},
		{
			name: "everything",
			opts: upstream.PutOptions{
				Mode: upstream.PutAppend, BackgroundFetch: true, IfGenerationMatch: new(uint64(7)),
				Metadata: "m", TimeToLive: 2 * time.Hour,
			},
			wantQuery: "append=true&background_fetch=true", wantGen: "7", wantMeta: "m", wantTTL: "7200",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, nil)
			value := []byte("value \x00 bytes")
			if err := f.client(t, nil).PutItem(t.Context(), "s", "k", value, tt.opts); err != nil {
				t.Fatalf("PutItem: %v", err)
			}
			got := f.only(t)
			if got.Method != http.MethodPut {
				t.Errorf("method = %s, want PUT", got.Method)
			}
			if got.RawQuery != tt.wantQuery {
				t.Errorf("query = %q, want %q", got.RawQuery, tt.wantQuery)
			}
			if !bytes.Equal(got.Body, value) {
				t.Errorf("body = %q, want %q", got.Body, value)
			}
			checkWireHeader(t, got.Header, "If-Generation-Match", tt.wantGen)
			checkWireHeader(t, got.Header, "Metadata", tt.wantMeta)
			checkWireHeader(t, got.Header, "time_to_live_sec", tt.wantTTL)
			checkWireHeader(t, got.Header, "Fastly-Key", wireToken)
			checkWireHeader(t, got.Header, "Content-Type", "application/octet-stream")
		})
	}
}

// checkWireHeader checks a header's single value, or its absence when want is
// empty. The server canonicalises names, so Values is used to look up.
func checkWireHeader(t *testing.T, h http.Header, name, want string) {
	t.Helper()
	got := h.Values(name)
	switch {
	case want == "" && len(got) != 0:
		t.Errorf("header %s = %q, want it absent", name, got)
	case want != "" && (len(got) != 1 || got[0] != want):
		t.Errorf("header %s = %q, want [%q]", name, got, want)
	}
}

// teeConn copies everything a connection reads into a shared buffer, so a
// test can see header names as they were on the wire, before Go's server
// canonicalises them.
type teeConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

type teeListener struct {
	net.Listener
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (l teeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return teeConn{Conn: c, mu: l.mu, buf: l.buf}, nil
}

// TestTimeToLiveHeaderExactName checks that time_to_live_sec goes out with
// its exact lowercase, underscored name. Go would canonicalise a name set
// through Header.Set to "Time_to_live_sec"; Fastly documents the exact
// spelling, so the raw request bytes are checked.
func TestTimeToLiveHeaderExactName(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var raw bytes.Buffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(answerLikeFastly))
	srv.Listener = teeListener{Listener: srv.Listener, mu: &mu, buf: &raw}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutItem(t.Context(), "s", "k", []byte("v"), upstream.PutOptions{TimeToLive: 42 * time.Second}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	mu.Lock()
	wire := raw.String()
	mu.Unlock()
	if !strings.Contains(wire, "\r\ntime_to_live_sec: 42\r\n") {
		t.Errorf("request did not carry the exact header line %q; raw request:\n%s", "time_to_live_sec: 42", wire)
	}
}

// TestDeleteWireForm checks force and if-generation-match on DELETE.
func TestDeleteWireForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      upstream.DeleteOptions
		wantQuery string
		wantGen   string
	}{
		{name: "plain"},
		{name: "force", opts: upstream.DeleteOptions{Force: true}, wantQuery: "force=true"},
		{name: "generation zero", opts: upstream.DeleteOptions{IfGenerationMatch: new(uint64(0))}, wantGen: "0"},
		{name: "max generation", opts: upstream.DeleteOptions{IfGenerationMatch: new(uint64(18446744073709551615))}, wantGen: "18446744073709551615"},
		{name: "force and generation", opts: upstream.DeleteOptions{Force: true, IfGenerationMatch: new(uint64(5))}, wantQuery: "force=true", wantGen: "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, nil)
			if err := f.client(t, nil).DeleteItem(t.Context(), "s", "k", tt.opts); err != nil {
				t.Fatalf("DeleteItem: %v", err)
			}
			got := f.only(t)
			if got.Method != http.MethodDelete {
				t.Errorf("method = %s, want DELETE", got.Method)
			}
			if got.RawQuery != tt.wantQuery {
				t.Errorf("query = %q, want %q", got.RawQuery, tt.wantQuery)
			}
			checkWireHeader(t, got.Header, "If-Generation-Match", tt.wantGen)
			checkWireHeader(t, got.Header, "Fastly-Key", wireToken)
		})
	}
}

// TestGetWireForm checks that a GET carries no query and no conditions.
func TestGetWireForm(t *testing.T) {
	t.Parallel()
	f := newWireFake(t, nil)
	if _, err := f.client(t, func(c *upstream.ClientConfig) { c.UserAgent = "kvgate-test/1" }).GetItem(t.Context(), "s", "k"); err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	got := f.only(t)
	if got.Method != http.MethodGet || got.RequestURI != "/resources/stores/kv/s/keys/k" {
		t.Errorf("request = %s %s, want GET /resources/stores/kv/s/keys/k", got.Method, got.RequestURI)
	}
	checkWireHeader(t, got.Header, "Fastly-Key", wireToken)
	checkWireHeader(t, got.Header, "User-Agent", "kvgate-test/1")
	checkWireHeader(t, got.Header, "If-Generation-Match", "")
}

// TestListWireForm checks the list query. Query keys are sorted, as
// url.Values.Encode and go-fastly produce them, so the raw query is
// compared exactly against the recorded form (reference §2.1).
func TestListWireForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      upstream.ListOptions
		wantQuery string
	}{
		{name: "default is strong", wantQuery: "consistency=strong"},
		{name: "eventual", opts: upstream.ListOptions{Consistency: upstream.ConsistencyEventual}, wantQuery: "consistency=eventual"},
		{name: "limit", opts: upstream.ListOptions{Limit: 4}, wantQuery: "consistency=strong&limit=4"},
		{name: "negative limit is not sent", opts: upstream.ListOptions{Limit: -1}, wantQuery: "consistency=strong"},
		{name: "prefix", opts: upstream.ListOptions{Prefix: "ba"}, wantQuery: "consistency=strong&prefix=ba"},
		// The recorded padded cursor and its recorded encoding.
		{
			name:      "recorded padded cursor",
			opts:      upstream.ListOptions{Cursor: "CgtkcmFnb25mcnVpdA==", Limit: 4},
			wantQuery: "consistency=strong&cursor=CgtkcmFnb25mcnVpdA%3D%3D&limit=4",
		},
		{
			name:      "cursor with plus and slash",
			opts:      upstream.ListOptions{Cursor: "ab+/cd=="},
			wantQuery: "consistency=strong&cursor=ab%2B%2Fcd%3D%3D",
		},
		{
			name:      "everything",
			opts:      upstream.ListOptions{Prefix: "p", Cursor: "Cg==", Limit: 10, Consistency: upstream.ConsistencyEventual},
			wantQuery: "consistency=eventual&cursor=Cg%3D%3D&limit=10&prefix=p",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, nil)
			if _, err := f.client(t, nil).ListKeys(t.Context(), "s", tt.opts); err != nil {
				t.Fatalf("ListKeys: %v", err)
			}
			got := f.only(t)
			if got.Method != http.MethodGet || got.Path != "/resources/stores/kv/s/keys" {
				t.Errorf("request = %s %s, want GET /resources/stores/kv/s/keys", got.Method, got.Path)
			}
			if got.RawQuery != tt.wantQuery {
				t.Errorf("query = %q, want %q", got.RawQuery, tt.wantQuery)
			}
			// A cursor must reach the server byte for byte: '+' must not
			// turn into a space, and padding must survive.
			if got.Query.Get("cursor") != tt.opts.Cursor {
				t.Errorf("server decoded cursor %q, want %q", got.Query.Get("cursor"), tt.opts.Cursor)
			}
			checkWireHeader(t, got.Header, "Fastly-Key", wireToken)
		})
	}
}

// TestNoTokenNoHeader checks that an empty token sends no Fastly-Key rather
// than an empty one, and that the default User-Agent is set.
func TestNoTokenNoHeader(t *testing.T) {
	t.Parallel()
	f := newWireFake(t, nil)
	if _, err := f.client(t, func(c *upstream.ClientConfig) { c.Token = "" }).GetItem(t.Context(), "s", "k"); err != nil {
		t.Fatal(err)
	}
	got := f.only(t)
	checkWireHeader(t, got.Header, "Fastly-Key", "")
	checkWireHeader(t, got.Header, "User-Agent", "kvgate")
}

// TestNewClientBaseURL checks base URL validation and that a trailing slash
// does not produce a double slash in request paths.
func TestNewClientBaseURL(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"ftp://example.com", "example.com", "http://", "://x", "http://[::1"} {
		if _, err := upstream.NewClient(upstream.ClientConfig{BaseURL: bad}); err == nil {
			t.Errorf("NewClient(%q) succeeded, want an error", bad)
		}
	}
	if _, err := upstream.NewClient(upstream.ClientConfig{}); err != nil {
		t.Errorf("NewClient with the default base URL: %v", err)
	}
	f := newWireFake(t, nil)
	c := f.client(t, func(c *upstream.ClientConfig) { c.BaseURL = f.srv.URL + "/" })
	if _, err := c.GetItem(t.Context(), "s", "k"); err != nil {
		t.Fatal(err)
	}
	if got := f.only(t).RequestURI; got != "/resources/stores/kv/s/keys/k" {
		t.Errorf("request target = %q, want no double slash", got)
	}
}

// TestGetItemParsesResponse checks Generation, Metadata, Last-Modified and
// the value, and that a response without a usable Generation is refused:
// a caller doing compare-and-set must never see a made-up generation.
func TestGetItemParsesResponse(t *testing.T) {
	t.Parallel()
	lastMod := time.Date(2025, 6, 23, 19, 41, 19, 0, time.UTC)
	tests := []struct {
		name    string
		header  map[string]string // nil value entries are omitted
		body    string
		want    *upstream.Item
		wantErr bool
	}{
		{
			name:   "recorded response",
			header: map[string]string{"Generation": "1750707679010222", "Metadata": "meta", "Last-Modified": "Mon, 23 Jun 2025 19:41:19 GMT"},
			body:   "prefixapple0",
			want:   &upstream.Item{Value: []byte("prefixapple0"), Metadata: "meta", Generation: 1750707679010222, LastModified: lastMod},
		},
		{
			name:   "empty metadata and value",
			header: map[string]string{"Generation": "1", "Metadata": ""},
			want:   &upstream.Item{Value: []byte{}, Generation: 1},
		},
		{
			name:   "max generation",
			header: map[string]string{"Generation": "18446744073709551615"},
			body:   "v",
			want:   &upstream.Item{Value: []byte("v"), Generation: 18446744073709551615},
		},
		{
			name:   "zero generation is a valid number",
			header: map[string]string{"Generation": "0"},
			body:   "v",
			want:   &upstream.Item{Value: []byte("v"), Generation: 0},
		},
		{
			name:   "unparsable Last-Modified is ignored",
			header: map[string]string{"Generation": "2", "Last-Modified": "yesterday"},
			body:   "v",
			want:   &upstream.Item{Value: []byte("v"), Generation: 2},
		},
		{name: "missing generation", header: map[string]string{"Metadata": "m"}, body: "v", wantErr: true},
		{name: "empty generation", header: map[string]string{"Generation": ""}, body: "v", wantErr: true},
		{name: "non-numeric generation", header: map[string]string{"Generation": "abc"}, body: "v", wantErr: true},
		{name: "negative generation", header: map[string]string{"Generation": "-1"}, body: "v", wantErr: true},
		{name: "generation overflows u64", header: map[string]string{"Generation": "18446744073709551616"}, body: "v", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = []string{v}
				}
				_, _ = io.WriteString(w, tt.body)
			})
			item, err := f.client(t, nil).GetItem(t.Context(), "s", "k")
			if tt.wantErr {
				respErr, ok := errors.AsType[*upstream.ResponseError](err)
				if !ok {
					t.Fatalf("err = %v (%T), want *upstream.ResponseError", err, err)
				}
				if respErr.Op != upstream.OpGet {
					t.Errorf("Op = %q, want %q", respErr.Op, upstream.OpGet)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetItem: %v", err)
			}
			if !bytes.Equal(item.Value, tt.want.Value) || item.Metadata != tt.want.Metadata ||
				item.Generation != tt.want.Generation || !item.LastModified.Equal(tt.want.LastModified) {
				t.Errorf("item = %+v, want %+v", item, tt.want)
			}
		})
	}
}

// TestGetItemValueLimit checks MaxValueBytes against both a declared
// Content-Length (refused before reading) and a chunked body of unknown
// length (refused once it passes the limit), so a huge value cannot exhaust
// memory either way.
func TestGetItemValueLimit(t *testing.T) {
	t.Parallel()
	const limit = 16
	tests := []struct {
		name    string
		size    int
		chunked bool
		wantErr bool
	}{
		{name: "declared at the limit", size: limit},
		{name: "declared over the limit", size: limit + 1, wantErr: true},
		{name: "chunked small", size: 3, chunked: true},
		{name: "chunked at the limit", size: limit, chunked: true},
		{name: "chunked over the limit", size: limit + 1, chunked: true, wantErr: true},
		{name: "chunked far over the limit", size: 10 * limit, chunked: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			value := bytes.Repeat([]byte("x"), tt.size)
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Generation", "1")
				if tt.chunked {
					// Flushing before the body commits the response without
					// a Content-Length, so it goes out chunked.
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
				} else {
					w.Header().Set("Content-Length", strconv.Itoa(len(value)))
				}
				_, _ = w.Write(value)
			})
			item, err := f.client(t, func(c *upstream.ClientConfig) { c.MaxValueBytes = limit }).GetItem(t.Context(), "s", "k")
			if tt.wantErr {
				if _, ok := errors.AsType[*upstream.ResponseError](err); !ok {
					t.Fatalf("err = %v (%T), want *upstream.ResponseError", err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetItem: %v", err)
			}
			if !bytes.Equal(item.Value, value) {
				t.Errorf("value = %q, want %q", item.Value, value)
			}
		})
	}
}

// TestGetItemChunkedTransferEncoding checks the chunked path really was a
// body of unknown length, so the test above is not vacuous.
func TestGetItemChunkedTransferEncoding(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Generation", "1")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "chunked-value")
	}))
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + "/resources/stores/kv/s/keys/k")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("server did not answer chunked: ContentLength=%d TransferEncoding=%v", resp.ContentLength, resp.TransferEncoding)
	}
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	item, err := c.GetItem(t.Context(), "s", "k")
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if string(item.Value) != "chunked-value" {
		t.Errorf("value = %q", item.Value)
	}
}

// TestListKeysParsesResponse checks page parsing: the cursor when present,
// an empty cursor when next_cursor is omitted (Fastly's last page), and a
// *ResponseError for a body that is not a listing.
func TestListKeysParsesResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantKeys   []string
		wantCursor string
		wantErr    bool
	}{
		{
			name:       "recorded first page",
			body:       `{"data":["apple","banana","batch-1","batch-2"],"meta":{"limit":4,"next_cursor":"CgdiYXRjaC0y"}}`,
			wantKeys:   []string{"apple", "banana", "batch-1", "batch-2"},
			wantCursor: "CgdiYXRjaC0y",
		},
		{
			name:     "recorded last page omits next_cursor",
			body:     `{"data":["carrot","dragonfruit","eggplant"],"meta":{"limit":4}}`,
			wantKeys: []string{"carrot", "dragonfruit", "eggplant"},
		},
		{
			name:     "eventual page with echoed fields",
			body:     `{"data":["a"],"meta":{"limit":1000,"prefix":"a","consistency":"eventual"}}`,
			wantKeys: []string{"a"},
		},
		{name: "empty listing", body: `{"data":[],"meta":{"limit":1000}}`, wantKeys: []string{}},
		{name: "no meta", body: `{"data":["a"]}`, wantKeys: []string{"a"}},
		{name: "malformed JSON", body: `{"data":["a"`, wantErr: true},
		{name: "not JSON", body: `<html>oops</html>`, wantErr: true},
		{name: "empty body", body: ``, wantErr: true},
		{name: "data of the wrong type", body: `{"data":"a","meta":{}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.body)
			})
			page, err := f.client(t, nil).ListKeys(t.Context(), "s", upstream.ListOptions{})
			if tt.wantErr {
				respErr, ok := errors.AsType[*upstream.ResponseError](err)
				if !ok {
					t.Fatalf("err = %v (%T), want *upstream.ResponseError", err, err)
				}
				if respErr.Op != upstream.OpList {
					t.Errorf("Op = %q, want %q", respErr.Op, upstream.OpList)
				}
				return
			}
			if err != nil {
				t.Fatalf("ListKeys: %v", err)
			}
			if strings.Join(page.Keys, ",") != strings.Join(tt.wantKeys, ",") || page.NextCursor != tt.wantCursor {
				t.Errorf("page = %q cursor %q, want %q cursor %q", page.Keys, page.NextCursor, tt.wantKeys, tt.wantCursor)
			}
		})
	}
}

// TestStatusErrors checks that every failure status becomes a
// *StatusError naming the call, and that Precondition records what the
// request was conditional on: Fastly answers 412 with an empty body both
// for add=true and for if-generation-match, so only this tells them apart.
func TestStatusErrors(t *testing.T) {
	t.Parallel()
	type condClientCall struct {
		name string
		op   upstream.Op
		cond upstream.Precondition
		do   func(ctx context.Context, c *upstream.Client) error
	}
	calls := []condClientCall{
		{"get", upstream.OpGet, upstream.PreconditionNone, func(ctx context.Context, c *upstream.Client) error {
			_, err := c.GetItem(ctx, "s", "k")
			return err
		}},
		{"put", upstream.OpPut, upstream.PreconditionNone, func(ctx context.Context, c *upstream.Client) error {
			return c.PutItem(ctx, "s", "k", []byte("v"), upstream.PutOptions{})
		}},
		{"put append", upstream.OpPut, upstream.PreconditionNone, func(ctx context.Context, c *upstream.Client) error {
			return c.PutItem(ctx, "s", "k", []byte("v"), upstream.PutOptions{Mode: upstream.PutAppend})
		}},
		{"put add", upstream.OpPut, upstream.PreconditionAbsent, func(ctx context.Context, c *upstream.Client) error {
			return c.PutItem(ctx, "s", "k", []byte("v"), upstream.PutOptions{Mode: upstream.PutAdd})
		}},
		{"put generation", upstream.OpPut, upstream.PreconditionGeneration, func(ctx context.Context, c *upstream.Client) error {
			return c.PutItem(ctx, "s", "k", []byte("v"), upstream.PutOptions{IfGenerationMatch: new(uint64(3))})
		}},
		{"put generation zero", upstream.OpPut, upstream.PreconditionGeneration, func(ctx context.Context, c *upstream.Client) error {
			return c.PutItem(ctx, "s", "k", []byte("v"), upstream.PutOptions{IfGenerationMatch: new(uint64(0))})
		}},
		{"delete", upstream.OpDelete, upstream.PreconditionNone, func(ctx context.Context, c *upstream.Client) error {
			return c.DeleteItem(ctx, "s", "k", upstream.DeleteOptions{})
		}},
		{"delete generation", upstream.OpDelete, upstream.PreconditionGeneration, func(ctx context.Context, c *upstream.Client) error {
			return c.DeleteItem(ctx, "s", "k", upstream.DeleteOptions{Force: true, IfGenerationMatch: new(uint64(3))})
		}},
		{"list", upstream.OpList, upstream.PreconditionNone, func(ctx context.Context, c *upstream.Client) error {
			_, err := c.ListKeys(ctx, "s", upstream.ListOptions{})
			return err
		}},
	}
	statuses := []int{400, 401, 403, 404, 412, 413, 429, 500, 502, 503}
	for _, status := range statuses {
		for _, c := range calls {
			t.Run(fmt.Sprintf("%d/%s", status, c.name), func(t *testing.T) {
				t.Parallel()
				// 412s come with an empty body on the wire; others with a
				// legacy {"msg"} body, which is kept for logs.
				body := ""
				if status != http.StatusPreconditionFailed {
					body = `{"msg":"failure ` + strconv.Itoa(status) + `"}`
				}
				f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(status)
					_, _ = io.WriteString(w, body)
				})
				err := c.do(t.Context(), f.client(t, nil))
				se, ok := errors.AsType[*upstream.StatusError](err)
				if !ok {
					t.Fatalf("err = %v (%T), want *upstream.StatusError", err, err)
				}
				if se.Status != status || se.Op != c.op || se.Precondition != c.cond {
					t.Errorf("StatusError = {Status:%d Op:%q Precondition:%d}, want {%d %q %d}",
						se.Status, se.Op, se.Precondition, status, c.op, c.cond)
				}
				if se.RetryAfter != 0 {
					t.Errorf("RetryAfter = %v without any header, want 0", se.RetryAfter)
				}
				if se.Body != body {
					t.Errorf("Body = %q, want %q", se.Body, body)
				}
				if !strings.Contains(se.Error(), strconv.Itoa(status)) {
					t.Errorf("Error() = %q does not name the status", se.Error())
				}
			})
		}
	}
}

// TestStatusErrorBodyIsBounded checks that a huge error body is cut short,
// since it is only kept for logs.
func TestStatusErrorBodyIsBounded(t *testing.T) {
	t.Parallel()
	f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(bytes.Repeat([]byte("e"), 1<<20))
	})
	err := f.client(t, nil).PutItem(t.Context(), "s", "k", nil, upstream.PutOptions{})
	se, ok := errors.AsType[*upstream.StatusError](err)
	if !ok {
		t.Fatalf("err = %v (%T), want *upstream.StatusError", err, err)
	}
	if len(se.Body) > 4096 {
		t.Errorf("Body kept %d bytes, want a bounded prefix", len(se.Body))
	}
}

// TestRedirectNotFollowed checks that a redirect is reported rather than
// followed: following it would resend Fastly-Key to another location.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/steal", http.StatusTemporaryRedirect)
	})
	_, err := f.client(t, nil).GetItem(t.Context(), "s", "k")
	se, ok := errors.AsType[*upstream.StatusError](err)
	if !ok || se.Status != http.StatusTemporaryRedirect {
		t.Fatalf("err = %v (%T), want a 307 *upstream.StatusError", err, err)
	}
	f.only(t) // exactly one request: the redirect was not followed
}

// TestRetryAfter checks how the wait is read from a 429: Retry-After in
// seconds or as an HTTP date, else Fastly-RateLimit-Reset in epoch seconds.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	// Header values are computed inside the handler, at response time, so
	// date-based waits are measured against a clock close to the client's.
	tests := []struct {
		name     string
		header   func(now time.Time) map[string]string
		min, max time.Duration
	}{
		{name: "none", header: func(time.Time) map[string]string { return nil }},
		{name: "seconds", header: func(time.Time) map[string]string {
			return map[string]string{"Retry-After": "120"}
		}, min: 120 * time.Second, max: 120 * time.Second},
		{name: "zero seconds", header: func(time.Time) map[string]string {
			return map[string]string{"Retry-After": "0"}
		}},
		{name: "HTTP date", header: func(now time.Time) map[string]string {
			return map[string]string{"Retry-After": now.Add(90 * time.Second).UTC().Format(http.TimeFormat)}
		}, min: 85 * time.Second, max: 91 * time.Second},
		{name: "HTTP date in the past", header: func(now time.Time) map[string]string {
			return map[string]string{"Retry-After": now.Add(-time.Hour).UTC().Format(http.TimeFormat)}
		}},
		{name: "rate limit reset", header: func(now time.Time) map[string]string {
			return map[string]string{"Fastly-RateLimit-Reset": strconv.FormatInt(now.Add(300*time.Second).Unix(), 10)}
		}, min: 295 * time.Second, max: 301 * time.Second},
		{name: "rate limit reset in the past", header: func(now time.Time) map[string]string {
			return map[string]string{"Fastly-RateLimit-Reset": strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)}
		}},
		{name: "Retry-After wins over the reset", header: func(now time.Time) map[string]string {
			return map[string]string{
				"Retry-After":            "7",
				"Fastly-RateLimit-Reset": strconv.FormatInt(now.Add(300*time.Second).Unix(), 10),
			}
		}, min: 7 * time.Second, max: 7 * time.Second},
		{name: "garbage Retry-After falls back to the reset", header: func(now time.Time) map[string]string {
			return map[string]string{
				"Retry-After":            "soon",
				"Fastly-RateLimit-Reset": strconv.FormatInt(now.Add(60*time.Second).Unix(), 10),
			}
		}, min: 55 * time.Second, max: 61 * time.Second},
		{name: "negative Retry-After is ignored", header: func(time.Time) map[string]string {
			return map[string]string{"Retry-After": "-5"}
		}},
		{name: "garbage reset is ignored", header: func(time.Time) map[string]string {
			return map[string]string{"Fastly-RateLimit-Reset": "later"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header(time.Now()) {
					w.Header().Set(k, v)
				}
				w.WriteHeader(http.StatusTooManyRequests)
			})
			err := f.client(t, nil).PutItem(t.Context(), "s", "k", []byte("v"), upstream.PutOptions{})
			se, ok := errors.AsType[*upstream.StatusError](err)
			if !ok || se.Status != http.StatusTooManyRequests {
				t.Fatalf("err = %v (%T), want a 429 *upstream.StatusError", err, err)
			}
			if se.RetryAfter < tt.min || se.RetryAfter > tt.max {
				t.Errorf("RetryAfter = %v, want between %v and %v", se.RetryAfter, tt.min, tt.max)
			}
		})
	}
}

// TestTransportErrorOnClosedConnection checks that a connection dropped
// before any answer is a *TransportError, and that its message carries
// neither the key nor the URL: keys may be personal data and end up in
// logs.
func TestTransportErrorOnClosedConnection(t *testing.T) {
	t.Parallel()
	const key = "secret-user@example.com/ssn"
	for _, c := range clientCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				_ = conn.Close()
			})
			err := c.do(t.Context(), f.client(t, nil), "store-id", key)
			assertTransportError(t, err, c.op, key, f.srv.URL)
		})
	}
}

// TestTransportErrorOnRefusedConnection checks the same for a server that
// is not there at all.
func TestTransportErrorOnRefusedConnection(t *testing.T) {
	t.Parallel()
	const key = "secret-key"
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens on base any more
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range clientCalls {
		err := cc.do(t.Context(), c, "store-id", key)
		assertTransportError(t, err, cc.op, key, base)
	}
}

func assertTransportError(t *testing.T, err error, op upstream.Op, key, base string) {
	t.Helper()
	te, ok := errors.AsType[*upstream.TransportError](err)
	if !ok {
		t.Fatalf("err = %v (%T), want *upstream.TransportError", err, err)
	}
	if te.Op != op {
		t.Errorf("Op = %q, want %q", te.Op, op)
	}
	msg := err.Error()
	for _, secret := range []string{key, url.PathEscape(key), base, "/resources/stores"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q leaks %q", msg, secret)
		}
	}
}

// TestGetItemTruncatedBody checks that a body shorter than its declared
// Content-Length fails as a transport error instead of returning a
// truncated value as if it were whole.
func TestGetItemTruncatedBody(t *testing.T) {
	t.Parallel()
	f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Generation", "1")
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "only-part")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	_, err := f.client(t, nil).GetItem(t.Context(), "s", "secret-key")
	assertTransportError(t, err, upstream.OpGet, "secret-key", f.srv.URL)
}

// TestContextErrors checks that cancellation and deadlines come back as the
// context's own errors, not wrapped as transport failures, so callers can
// map them to Canceled / DeadlineExceeded.
func TestContextErrors(t *testing.T) {
	t.Parallel()
	for _, c := range clientCalls {
		t.Run(c.name+"/cancelled before the call", func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, nil)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := c.do(ctx, f.client(t, nil), "s", "k")
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v (%T), want context.Canceled", err, err)
			}
		})
		t.Run(c.name+"/cancelled while waiting", func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{})
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done() // hold the answer until the client gives up
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go func() {
				<-started
				cancel()
			}()
			err := c.do(ctx, f.client(t, nil), "s", "k")
			if err != context.Canceled {
				t.Fatalf("err = %v (%T), want context.Canceled itself", err, err)
			}
		})
		t.Run(c.name+"/deadline", func(t *testing.T) {
			t.Parallel()
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			})
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			err := c.do(ctx, f.client(t, nil), "s", "k")
			if err != context.DeadlineExceeded {
				t.Fatalf("err = %v (%T), want context.DeadlineExceeded itself", err, err)
			}
		})
	}
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestContextCancelledDuringBody checks cancellation after the headers have
// arrived, while the body is still being read, for the two calls that read
// a body. The transport cancels right after RoundTrip returns, so the
// cancellation deterministically lands in the body read.
func TestContextCancelledDuringBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		head func(w http.ResponseWriter)
		do   func(ctx context.Context, c *upstream.Client) error
	}{
		{
			name: "get",
			head: func(w http.ResponseWriter) {
				w.Header().Set("Generation", "1")
				w.Header().Set("Content-Length", "100")
			},
			do: func(ctx context.Context, c *upstream.Client) error {
				_, err := c.GetItem(ctx, "s", "k")
				return err
			},
		},
		{
			name: "list",
			head: func(w http.ResponseWriter) { w.Header().Set("Content-Type", "application/json") },
			do: func(ctx context.Context, c *upstream.Client) error {
				_, err := c.ListKeys(ctx, "s", upstream.ListOptions{})
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f := newWireFake(t, func(w http.ResponseWriter, r *http.Request) {
				tt.head(w)
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, `{"data":["a"`)
				w.(http.Flusher).Flush()
				<-r.Context().Done() // never finish the body
			})
			base := upstream.NewHTTPClient(1)
			t.Cleanup(base.CloseIdleConnections)
			hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := base.Transport.RoundTrip(r)
				cancel() // the headers are in; the body is not
				return resp, err
			})}
			c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: f.srv.URL, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			err = tt.do(ctx, c)
			// errors.Is, not identity: GetItem wraps a body-read
			// cancellation in *TransportError (ListKeys unwraps it). The
			// facade checks errors.Is(context.Canceled) before
			// *TransportError, so both still map to Canceled.
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v (%T), want context.Canceled", err, err)
			}
		})
	}
}

// TestConcurrentUse checks the client is safe for concurrent use (run with
// -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	f := newWireFake(t, nil)
	c := f.client(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			errs <- clientCalls[i%len(clientCalls)].do(t.Context(), c, "s", "k"+strconv.Itoa(i))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
