package localstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// The store id every test writes to. Stores are created by their first
// write, so any id works.
const storeID = "teststore"

// fakeClock is an injectable clock, so expiry is tested without sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	// A fixed, whole-second instant keeps Last-Modified comparisons exact.
	return &fakeClock{now: time.Date(2025, 6, 23, 19, 41, 19, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness is a store served over real HTTP, with a client for it.
type harness struct {
	store *localstore.Store
	srv   *httptest.Server
	c     *upstream.Client
}

func newHarness(t *testing.T, opts localstore.Config) *harness {
	t.Helper()
	h := openHarness(t, opts)
	t.Cleanup(func() { h.close(t) })
	return h
}

// openHarness opens a store and serves it, for tests that close and reopen
// it themselves (newHarness closes it when the test ends).
func openHarness(t *testing.T, opts localstore.Config) *harness {
	t.Helper()
	store, err := localstore.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	srv := httptest.NewServer(store.Handler())
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, HTTPClient: srv.Client(), Token: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{store: store, srv: srv, c: c}
}

// close stops serving, then closes the store's file.
func (h *harness) close(t *testing.T) {
	t.Helper()
	h.srv.Close()
	if err := h.store.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// eachBackend runs fn against the in-memory and the bbolt backend: the HTTP
// semantics must not depend on where items are kept.
func eachBackend(t *testing.T, fn func(t *testing.T, opts localstore.Config)) {
	t.Helper()
	for _, b := range []struct {
		name string
		opts func(t *testing.T) localstore.Config
	}{
		{"memory", func(*testing.T) localstore.Config { return localstore.Config{} }},
		{"bbolt", func(t *testing.T) localstore.Config { return localstore.Config{Dir: t.TempDir()} }},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.opts(t))
		})
	}
}

func (h *harness) put(t *testing.T, key, value string, opts upstream.PutOptions) {
	t.Helper()
	if err := h.c.PutItem(t.Context(), storeID, key, []byte(value), opts); err != nil {
		t.Fatalf("PutItem(%q): %v", key, err)
	}
}

func (h *harness) get(t *testing.T, key string) *upstream.Item {
	t.Helper()
	item, err := h.c.GetItem(t.Context(), storeID, key)
	if err != nil {
		t.Fatalf("GetItem(%q): %v", key, err)
	}
	return item
}

// listAll reads every page and returns all keys.
func (h *harness) listAll(t *testing.T, opts upstream.ListOptions) []string {
	t.Helper()
	var keys []string
	for {
		page, err := h.c.ListKeys(t.Context(), storeID, opts)
		if err != nil {
			t.Fatalf("ListKeys(%+v): %v", opts, err)
		}
		keys = append(keys, page.Keys...)
		if page.NextCursor == "" {
			return keys
		}
		opts.Cursor = page.NextCursor
	}
}

// raw sends a request the client cannot express (bad flags, bad headers)
// and returns the response with its body read. target is an escaped path
// with an optional query.
func (h *harness) raw(t *testing.T, method, target string, header http.Header, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.srv.URL+target, body)
	if err != nil {
		t.Fatalf("building %s %s: %v", method, target, err)
	}
	for k, v := range header {
		req.Header[k] = v // verbatim, so time_to_live_sec keeps its spelling
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, target, err)
	}
	return resp, b
}

func itemTarget(key string) string {
	return "/resources/stores/kv/" + storeID + "/keys/" + url.PathEscape(key)
}

const listTarget = "/resources/stores/kv/" + storeID + "/keys"

// wantStatus checks err is a *StatusError with the given status (and
// precondition, for 412s); status 0 means err must be nil.
func wantStatus(t *testing.T, err error, status int, cond upstream.Precondition) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	se, ok := errors.AsType[*upstream.StatusError](err)
	if !ok {
		t.Fatalf("err = %v (%T), want a %d *upstream.StatusError", err, err, status)
	}
	if se.Status != status {
		t.Fatalf("status = %d, want %d (%v)", se.Status, status, err)
	}
	if status == http.StatusPreconditionFailed && se.Precondition != cond {
		t.Errorf("Precondition = %d, want %d", se.Precondition, cond)
	}
}

// wantJSONError checks a Fastly-style JSON error answer: the status, an
// application/json Content-Type and a body with a non-empty "msg".
func wantJSONError(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Msg string `json:"msg"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Msg == "" {
		t.Errorf("body %q is not a JSON error with a msg (%v)", body, err)
	}
}

// TestGenerationsIncrease checks that every write, to any key, gets a
// generation larger than all earlier ones, even when the clock stands still
// or steps back: compare-and-set relies on a generation never repeating.
func TestGenerationsIncrease(t *testing.T) {
	t.Parallel()
	clocks := []struct {
		name string
		step time.Duration // how the clock moves after each write
	}{
		{"real clock", 0},
		{"frozen clock", 0},
		{"clock stepping back", -time.Second},
	}
	for i, cl := range clocks {
		t.Run(cl.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				clock := newClock()
				if i > 0 {
					opts.Now = clock.Now
				}
				h := newHarness(t, opts)
				writes := []struct {
					key  string
					opts upstream.PutOptions
				}{
					{"a", upstream.PutOptions{}},
					{"a", upstream.PutOptions{}},
					{"b", upstream.PutOptions{}},
					{"a", upstream.PutOptions{Mode: upstream.PutAppend}},
					{"b", upstream.PutOptions{Mode: upstream.PutPrepend}},
					{"c", upstream.PutOptions{Mode: upstream.PutAdd}},
					{"a", upstream.PutOptions{Metadata: "m"}},
				}
				var last uint64
				for n, w := range writes {
					h.put(t, w.key, "v", w.opts)
					gen := h.get(t, w.key).Generation
					if gen <= last {
						t.Fatalf("write %d (%s): generation %d, not above the previous %d", n, w.key, gen, last)
					}
					last = gen
					clock.Advance(cl.step)
				}
				// A compare-and-set with the latest generation works.
				h.put(t, "a", "v", upstream.PutOptions{IfGenerationMatch: new(last)})
			})
		})
	}
}

// TestAdd checks add=true: it creates a missing key and answers an existing
// one with 412 and an empty body, as recorded (reference §0.4).
func TestAdd(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		err := h.c.PutItem(t.Context(), storeID, "k", []byte("first"), upstream.PutOptions{Mode: upstream.PutAdd})
		wantStatus(t, err, 0, 0)

		err = h.c.PutItem(t.Context(), storeID, "k", []byte("second"), upstream.PutOptions{Mode: upstream.PutAdd})
		wantStatus(t, err, http.StatusPreconditionFailed, upstream.PreconditionAbsent)
		if got := string(h.get(t, "k").Value); got != "first" {
			t.Errorf("value after the refused add = %q, want %q", got, "first")
		}

		// The 412 on the wire: empty body, no Content-Type.
		resp, body := h.raw(t, http.MethodPut, itemTarget("k")+"?add=true", nil, strings.NewReader("x"))
		if resp.StatusCode != http.StatusPreconditionFailed || len(body) != 0 || resp.Header.Get("Content-Type") != "" {
			t.Errorf("add on an existing key = %d, Content-Type %q, body %q; want 412, none, empty",
				resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})
}

// TestIfGenerationMatch checks if-generation-match on PUT and DELETE,
// including generation 0, which matches only a missing key (add is
// documented as its shortcut).
func TestIfGenerationMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		exists bool // write "old" first
		// gen picks the condition from the current generation.
		gen        func(cur uint64) uint64
		delete     bool
		wantStatus int
		// wantValue is the value afterwards; "" means the key is absent.
		wantValue string
	}{
		{name: "put match", exists: true, gen: func(g uint64) uint64 { return g }, wantValue: "new"},
		{name: "put mismatch above", exists: true, gen: func(g uint64) uint64 { return g + 1 }, wantStatus: 412, wantValue: "old"},
		{name: "put mismatch below", exists: true, gen: func(g uint64) uint64 { return g - 1 }, wantStatus: 412, wantValue: "old"},
		{name: "put zero on missing", gen: func(uint64) uint64 { return 0 }, wantValue: "new"},
		{name: "put zero on existing", exists: true, gen: func(uint64) uint64 { return 0 }, wantStatus: 412, wantValue: "old"},
		{name: "put nonzero on missing", gen: func(uint64) uint64 { return 12345 }, wantStatus: 412},
		{name: "delete match", exists: true, gen: func(g uint64) uint64 { return g }, delete: true},
		{name: "delete mismatch", exists: true, gen: func(g uint64) uint64 { return g + 1 }, delete: true, wantStatus: 412, wantValue: "old"},
		{name: "delete zero on existing", exists: true, gen: func(uint64) uint64 { return 0 }, delete: true, wantStatus: 412, wantValue: "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				h.put(t, "other", "x", upstream.PutOptions{}) // so the store exists either way
				var cur uint64
				if tt.exists {
					h.put(t, "k", "old", upstream.PutOptions{})
					cur = h.get(t, "k").Generation
				}
				cond := new(tt.gen(cur))
				var err error
				if tt.delete {
					err = h.c.DeleteItem(t.Context(), storeID, "k", upstream.DeleteOptions{IfGenerationMatch: cond})
				} else {
					err = h.c.PutItem(t.Context(), storeID, "k", []byte("new"), upstream.PutOptions{IfGenerationMatch: cond})
				}
				wantStatus(t, err, tt.wantStatus, upstream.PreconditionGeneration)

				item, err := h.c.GetItem(t.Context(), storeID, "k")
				if tt.wantValue == "" {
					wantStatus(t, err, http.StatusNotFound, 0)
					return
				}
				if err != nil {
					t.Fatalf("GetItem: %v", err)
				}
				if string(item.Value) != tt.wantValue {
					t.Errorf("value = %q, want %q", item.Value, tt.wantValue)
				}
				if tt.wantStatus != 0 && item.Generation != cur {
					t.Errorf("a refused write changed the generation from %d to %d", cur, item.Generation)
				}
			})
		})
	}
}

// TestWriteModesAndMetadata checks append and prepend (creating a missing
// key, concatenating onto an existing one) and that every write replaces
// the metadata: an append without metadata clears it (reference §0.6).
func TestWriteModesAndMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		existing  *upstream.PutOptions // nil: the key is missing
		mode      upstream.PutMode
		metadata  string
		wantValue string
		wantMeta  string
	}{
		{name: "append to missing creates", mode: upstream.PutAppend, wantValue: "new"},
		{name: "prepend to missing creates", mode: upstream.PutPrepend, wantValue: "new"},
		{name: "append concatenates", existing: &upstream.PutOptions{}, mode: upstream.PutAppend, wantValue: "oldnew"},
		{name: "prepend concatenates", existing: &upstream.PutOptions{}, mode: upstream.PutPrepend, wantValue: "newold"},
		{name: "overwrite replaces", existing: &upstream.PutOptions{}, mode: upstream.PutOverwrite, wantValue: "new"},
		{name: "append without metadata clears it", existing: &upstream.PutOptions{Metadata: "meta"}, mode: upstream.PutAppend, wantValue: "oldnew"},
		{name: "prepend with metadata replaces it", existing: &upstream.PutOptions{Metadata: "meta"}, mode: upstream.PutPrepend, metadata: "m2", wantValue: "newold", wantMeta: "m2"},
		{name: "overwrite without metadata clears it", existing: &upstream.PutOptions{Metadata: "meta"}, wantValue: "new"},
		{name: "overwrite with the same metadata keeps it", existing: &upstream.PutOptions{Metadata: "meta"}, metadata: "meta", wantValue: "new", wantMeta: "meta"},
		{name: "add sets metadata", mode: upstream.PutAdd, metadata: "m", wantValue: "new", wantMeta: "m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				if tt.existing != nil {
					h.put(t, "k", "old", *tt.existing)
				}
				h.put(t, "k", "new", upstream.PutOptions{Mode: tt.mode, Metadata: tt.metadata})
				item := h.get(t, "k")
				if string(item.Value) != tt.wantValue || item.Metadata != tt.wantMeta {
					t.Errorf("item = %q metadata %q, want %q metadata %q", item.Value, item.Metadata, tt.wantValue, tt.wantMeta)
				}
			})
		})
	}
}

// TestGetResponseHeaders checks the GET and HEAD headers against the
// recorded ones: Metadata present even when empty (reference §0.7),
// Generation, Last-Modified, lengths, and no body on HEAD.
func TestGetResponseHeaders(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		clock := newClock()
		opts.Now = clock.Now
		h := newHarness(t, opts)
		h.put(t, "plain", "hello", upstream.PutOptions{})
		h.put(t, "with-meta", "hi", upstream.PutOptions{Metadata: "meta"})
		gen := h.get(t, "plain").Generation

		tests := []struct {
			method, key, wantBody, wantMeta string
		}{
			{http.MethodGet, "plain", "hello", ""},
			{http.MethodHead, "plain", "", ""},
			{http.MethodGet, "with-meta", "hi", "meta"},
			{http.MethodHead, "with-meta", "", "meta"},
		}
		for _, tt := range tests {
			t.Run(tt.method+" "+tt.key, func(t *testing.T) {
				resp, body := h.raw(t, tt.method, itemTarget(tt.key), nil, nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d", resp.StatusCode)
				}
				if string(body) != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
				// Present, not merely empty: the map entry must exist.
				if m, ok := resp.Header["Metadata"]; !ok || len(m) != 1 || m[0] != tt.wantMeta {
					t.Errorf("Metadata header = %q (present %v), want [%q]", m, ok, tt.wantMeta)
				}
				if g, err := strconv.ParseUint(resp.Header.Get("Generation"), 10, 64); err != nil || g == 0 {
					t.Errorf("Generation = %q, want a positive decimal", resp.Header.Get("Generation"))
				}
				if lm := resp.Header.Get("Last-Modified"); lm != clock.Now().Format(http.TimeFormat) {
					t.Errorf("Last-Modified = %q, want %q", lm, clock.Now().Format(http.TimeFormat))
				}
				wantLen := strconv.Itoa(len(map[string]string{"plain": "hello", "with-meta": "hi"}[tt.key]))
				if cl := resp.Header.Get("Content-Length"); cl != wantLen {
					t.Errorf("Content-Length = %q, want %q (HEAD too)", cl, wantLen)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Errorf("Content-Type = %q, want application/octet-stream", ct)
				}
			})
		}
		if resp, _ := h.raw(t, http.MethodHead, itemTarget("plain"), nil, nil); resp.Header.Get("Generation") != strconv.FormatUint(gen, 10) {
			t.Errorf("HEAD Generation = %q, want the GET's %d", resp.Header.Get("Generation"), gen)
		}
		if resp, body := h.raw(t, http.MethodHead, itemTarget("missing"), nil, nil); resp.StatusCode != http.StatusNotFound || len(body) != 0 {
			t.Errorf("HEAD missing = %d with %d body bytes, want 404 without a body", resp.StatusCode, len(body))
		}
	})
}

// TestTTL checks time_to_live_sec with the injectable clock: the item is
// served until its expiry and is gone at the expiry instant: GET and HEAD
// 404, absent from listings, and treated as missing by every write
// condition.
func TestTTL(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	tests := []struct {
		name string
		// at is how long after the write the check runs.
		at    time.Duration
		check func(t *testing.T, h *harness)
	}{
		{name: "visible just before expiry", at: ttl - time.Millisecond, check: func(t *testing.T, h *harness) {
			if got := string(h.get(t, "k").Value); got != "v" {
				t.Errorf("value = %q", got)
			}
			if keys := h.listAll(t, upstream.ListOptions{}); !slices.Equal(keys, []string{"k", "keep"}) {
				t.Errorf("listed %q, want [k keep]", keys)
			}
		}},
		{name: "GET 404 at expiry", at: ttl, check: func(t *testing.T, h *harness) {
			_, err := h.c.GetItem(t.Context(), storeID, "k")
			wantStatus(t, err, http.StatusNotFound, 0)
		}},
		{name: "HEAD 404 after expiry", at: 2 * ttl, check: func(t *testing.T, h *harness) {
			if resp, _ := h.raw(t, http.MethodHead, itemTarget("k"), nil, nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("HEAD = %d, want 404", resp.StatusCode)
			}
		}},
		{name: "absent from listings at expiry", at: ttl, check: func(t *testing.T, h *harness) {
			if keys := h.listAll(t, upstream.ListOptions{}); !slices.Equal(keys, []string{"keep"}) {
				t.Errorf("listed %q, want [keep]", keys)
			}
			// And it does not make a page look like it has a successor.
			page, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{Prefix: "k", Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(page.Keys, []string{"keep"}) || page.NextCursor != "" {
				t.Errorf("page = %q cursor %q, want [keep] and no cursor", page.Keys, page.NextCursor)
			}
		}},
		{name: "DELETE 404 after expiry", at: ttl, check: func(t *testing.T, h *harness) {
			err := h.c.DeleteItem(t.Context(), storeID, "k", upstream.DeleteOptions{})
			wantStatus(t, err, http.StatusNotFound, 0)
		}},
		{name: "add succeeds after expiry", at: ttl, check: func(t *testing.T, h *harness) {
			h.put(t, "k", "again", upstream.PutOptions{Mode: upstream.PutAdd})
			if got := string(h.get(t, "k").Value); got != "again" {
				t.Errorf("value = %q, want again", got)
			}
		}},
		{name: "generation 0 matches after expiry", at: ttl, check: func(t *testing.T, h *harness) {
			h.put(t, "k", "again", upstream.PutOptions{IfGenerationMatch: new(uint64(0))})
		}},
		{name: "append starts afresh after expiry", at: ttl, check: func(t *testing.T, h *harness) {
			h.put(t, "k", "tail", upstream.PutOptions{Mode: upstream.PutAppend})
			if got := string(h.get(t, "k").Value); got != "tail" {
				t.Errorf("value = %q, want tail (the expired value must not be revived)", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				clock := newClock()
				opts.Now = clock.Now
				h := newHarness(t, opts)
				h.put(t, "k", "v", upstream.PutOptions{TimeToLive: ttl})
				h.put(t, "keep", "v", upstream.PutOptions{})
				clock.Advance(tt.at)
				tt.check(t, h)
			})
		})
	}
}

// TestTTLHeaderSpelling checks the store reads time_to_live_sec under its
// exact underscored name (Go's server would canonicalise it, so the lookup
// must not depend on spelling).
func TestTTLHeaderSpelling(t *testing.T) {
	t.Parallel()
	clock := newClock()
	h := newHarness(t, localstore.Config{Now: clock.Now})
	resp, body := h.raw(t, http.MethodPut, itemTarget("k"), http.Header{"time_to_live_sec": {"5"}}, strings.NewReader("v"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT = %d %s", resp.StatusCode, body)
	}
	clock.Advance(5 * time.Second)
	_, err := h.c.GetItem(t.Context(), storeID, "k")
	wantStatus(t, err, http.StatusNotFound, 0)
}

// TestDelete checks DELETE: 204 on success, 404 for a missing key, and
// force=true turning the 404 into 204 (reference §2.4).
func TestDelete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		exists     bool
		force      bool
		wantStatus int
	}{
		{name: "existing", exists: true, wantStatus: http.StatusNoContent},
		{name: "existing forced", exists: true, force: true, wantStatus: http.StatusNoContent},
		{name: "missing", wantStatus: http.StatusNotFound},
		{name: "missing forced", force: true, wantStatus: http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				h.put(t, "other", "x", upstream.PutOptions{})
				if tt.exists {
					h.put(t, "k", "v", upstream.PutOptions{})
				}
				target := itemTarget("k")
				if tt.force {
					target += "?force=true"
				}
				resp, body := h.raw(t, http.MethodDelete, target, nil, nil)
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("DELETE = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				if tt.wantStatus == http.StatusNoContent && len(body) != 0 {
					t.Errorf("204 carried a body %q", body)
				}
				_, err := h.c.GetItem(t.Context(), storeID, "k")
				wantStatus(t, err, http.StatusNotFound, 0)
				if got := h.listAll(t, upstream.ListOptions{}); !slices.Equal(got, []string{"other"}) {
					t.Errorf("listed %q after the delete, want [other]", got)
				}
			})
		})
	}
}

// TestDeleteThroughClient checks the client's view of the same outcomes.
func TestDeleteThroughClient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	err := h.c.DeleteItem(t.Context(), storeID, "missing", upstream.DeleteOptions{})
	wantStatus(t, err, http.StatusNotFound, 0)
	if se, _ := errors.AsType[*upstream.StatusError](err); se != nil && se.Op != upstream.OpDelete {
		t.Errorf("Op = %q, want %q", se.Op, upstream.OpDelete)
	}
	wantStatus(t, h.c.DeleteItem(t.Context(), storeID, "missing", upstream.DeleteOptions{Force: true}), 0, 0)
	// A forced delete in a store that was never written must not create
	// the store.
	_, err = h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})
	wantStatus(t, err, http.StatusNotFound, 0)
}

// TestListOrderPrefixLimit checks listings are in byte order (the order in
// every recording), filtered by prefix, and cut at the limit.
func TestListOrderPrefixLimit(t *testing.T) {
	t.Parallel()
	keys := []string{"b", "a", "B", "a/b", "a0", "é", "Z", "a-", "aa", "~", "ab", "éa", "a b"}
	sorted := slices.Clone(keys)
	slices.Sort(sorted) // Go compares strings bytewise
	tests := []struct {
		name       string
		opts       upstream.ListOptions
		want       []string
		wantCursor bool
	}{
		{name: "all", want: sorted},
		{name: "eventual reads the same", opts: upstream.ListOptions{Consistency: upstream.ConsistencyEventual}, want: sorted},
		{name: "prefix a", opts: upstream.ListOptions{Prefix: "a"}, want: []string{"a", "a b", "a-", "a/b", "a0", "aa", "ab"}},
		{name: "prefix é", opts: upstream.ListOptions{Prefix: "é"}, want: []string{"é", "éa"}},
		{name: "prefix matches nothing", opts: upstream.ListOptions{Prefix: "q"}, want: []string{}},
		{name: "limit", opts: upstream.ListOptions{Limit: 3}, want: sorted[:3], wantCursor: true},
		{name: "limit with prefix", opts: upstream.ListOptions{Prefix: "a", Limit: 2}, want: []string{"a", "a b"}, wantCursor: true},
		{name: "limit equal to the count", opts: upstream.ListOptions{Limit: len(keys)}, want: sorted},
	}
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		for _, k := range keys {
			h.put(t, k, "v", upstream.PutOptions{})
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				page, err := h.c.ListKeys(t.Context(), storeID, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(page.Keys, tt.want) {
					t.Errorf("keys = %q, want %q", page.Keys, tt.want)
				}
				if (page.NextCursor != "") != tt.wantCursor {
					t.Errorf("NextCursor = %q, want one: %v", page.NextCursor, tt.wantCursor)
				}
			})
		}
	})
}

// listBody is the list endpoint's JSON, with meta kept raw so a test can
// tell an omitted field from an empty one.
type listBody struct {
	Data []string                   `json:"data"`
	Meta map[string]json.RawMessage `json:"meta"`
}

// TestListWireShape checks the listing JSON against the recordings: data is
// an array (never null), meta.limit a number, next_cursor omitted on the
// last page, prefix echoed, consistency echoed only for eventual.
func TestListWireShape(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	h.put(t, "apple", "v", upstream.PutOptions{})
	h.put(t, "banana", "v", upstream.PutOptions{})
	tests := []struct {
		query    string
		wantData []string
		wantMeta map[string]string // raw JSON per meta field; exactly these fields
	}{
		{"?consistency=strong", []string{"apple", "banana"}, map[string]string{"limit": "1000"}},
		{"", []string{"apple", "banana"}, map[string]string{"limit": "1000"}},
		{"?consistency=eventual", []string{"apple", "banana"}, map[string]string{"limit": "1000", "consistency": `"eventual"`}},
		{"?prefix=ba", []string{"banana"}, map[string]string{"limit": "1000", "prefix": `"ba"`}},
		{"?prefix=zz", []string{}, map[string]string{"limit": "1000", "prefix": `"zz"`}},
		{"?limit=1", []string{"apple"}, map[string]string{"limit": "1", "next_cursor": ""}},
		{"?limit=2", []string{"apple", "banana"}, map[string]string{"limit": "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, raw := h.raw(t, http.MethodGet, listTarget+tt.query, nil, nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if !bytes.Contains(raw, []byte(`"data":[`)) {
				t.Errorf("data is not a JSON array: %s", raw)
			}
			var body listBody
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %s: %v", raw, err)
			}
			if !slices.Equal(body.Data, tt.wantData) {
				t.Errorf("data = %q, want %q", body.Data, tt.wantData)
			}
			if len(body.Meta) != len(tt.wantMeta) {
				t.Errorf("meta = %s, want exactly the fields %v", raw, tt.wantMeta)
			}
			for k, want := range tt.wantMeta {
				got, ok := body.Meta[k]
				if !ok {
					t.Errorf("meta.%s missing in %s", k, raw)
				} else if want != "" && string(got) != want {
					t.Errorf("meta.%s = %s, want %s", k, got, want)
				}
			}
		})
	}
}

// TestListPaging checks cursor paging: page sizes, the last page without
// next_cursor (omitted on the wire, not empty), and that the pages add up
// to every key exactly once in order.
func TestListPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n, limit  int
		wantSizes []int
	}{
		{25, 10, []int{10, 10, 5}},
		// An exact multiple: the second page must know it is the last.
		{20, 10, []int{10, 10}},
		{5, 10, []int{5}},
		{3, 1, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d keys by %d", tt.n, tt.limit), func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				var want []string
				for i := range tt.n {
					k := fmt.Sprintf("key-%03d", i)
					want = append(want, k)
					h.put(t, k, "v", upstream.PutOptions{})
				}
				var got []string
				var sizes []int
				cursor := ""
				for page := 0; ; page++ {
					if page > tt.n {
						t.Fatal("paging does not end")
					}
					q := url.Values{"limit": {strconv.Itoa(tt.limit)}}
					if cursor != "" {
						q.Set("cursor", cursor)
					}
					resp, raw := h.raw(t, http.MethodGet, listTarget+"?"+q.Encode(), nil, nil)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("page %d: status %d %s", page, resp.StatusCode, raw)
					}
					var body listBody
					if err := json.Unmarshal(raw, &body); err != nil {
						t.Fatal(err)
					}
					got = append(got, body.Data...)
					sizes = append(sizes, len(body.Data))
					next, ok := body.Meta["next_cursor"]
					if !ok {
						break
					}
					if err := json.Unmarshal(next, &cursor); err != nil || cursor == "" {
						t.Fatalf("page %d: next_cursor %s is present but not a usable string", page, next)
					}
					// Cursors look like Fastly's: standard base64 (reference §0.9).
					if _, err := base64.StdEncoding.DecodeString(cursor); err != nil {
						t.Errorf("cursor %q is not standard base64: %v", cursor, err)
					}
				}
				if !slices.Equal(sizes, tt.wantSizes) {
					t.Errorf("page sizes = %v, want %v", sizes, tt.wantSizes)
				}
				if !slices.Equal(got, want) {
					t.Errorf("pages = %q, want %q", got, want)
				}
				// The client sees the same pages.
				if all := h.listAll(t, upstream.ListOptions{Limit: tt.limit}); !slices.Equal(all, want) {
					t.Errorf("client pages = %q, want %q", all, want)
				}
			})
		})
	}
}

// TestListCursorSurvivesWrites checks that a cursor names a key, not an
// offset: keys inserted or deleted between pages neither shift nor repeat
// the rest of the listing, even when the cursor's own key is deleted.
func TestListCursorSurvivesWrites(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		for i := range 10 {
			h.put(t, fmt.Sprintf("k%02d", i), "v", upstream.PutOptions{})
		}
		first, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(first.Keys, []string{"k00", "k01", "k02", "k03", "k04"}) || first.NextCursor == "" {
			t.Fatalf("first page = %q cursor %q", first.Keys, first.NextCursor)
		}
		// Between pages: delete the cursor's key and the next one, insert
		// one key before the cursor (already passed) and one after it.
		for _, k := range []string{"k04", "k05"} {
			if err := h.c.DeleteItem(t.Context(), storeID, k, upstream.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		h.put(t, "k02x", "v", upstream.PutOptions{})
		h.put(t, "k04x", "v", upstream.PutOptions{})
		h.put(t, "k01", "rewritten", upstream.PutOptions{}) // already listed; must not reappear

		second, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{Limit: 5, Cursor: first.NextCursor})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"k04x", "k06", "k07", "k08", "k09"}; !slices.Equal(second.Keys, want) || second.NextCursor != "" {
			t.Errorf("second page = %q cursor %q, want %q and no cursor", second.Keys, second.NextCursor, want)
		}
	})
}

// TestListBadRequests checks the list endpoint's 400s, each with a JSON
// body carrying "msg", so a client's mistake is reported rather than
// silently ignored.
func TestListBadRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	h.put(t, "k", "v", upstream.PutOptions{})
	tests := []struct {
		name  string
		query url.Values
	}{
		{"cursor not base64", url.Values{"cursor": {"!!!"}}},
		{"cursor base64 without padding", url.Values{"cursor": {"Cg"}}},
		{"cursor not a key message", url.Values{"cursor": {base64.StdEncoding.EncodeToString([]byte{0, 0, 0})}}},
		{"cursor truncated", url.Values{"cursor": {base64.StdEncoding.EncodeToString([]byte{0x0a, 0x05, 'a'})}}},
		{"cursor with trailing bytes", url.Values{"cursor": {base64.StdEncoding.EncodeToString([]byte{0x0a, 0x01, 'a', 0x10, 0x01})}}},
		{"limit zero", url.Values{"limit": {"0"}}},
		{"limit negative", url.Values{"limit": {"-1"}}},
		{"limit not a number", url.Values{"limit": {"x"}}},
		{"limit fractional", url.Values{"limit": {"1.5"}}},
		{"prefix with slash", url.Values{"prefix": {"a/"}}},
		{"prefix with star", url.Values{"prefix": {"a*"}}},
		{"prefix with equals", url.Values{"prefix": {"a=b"}}},
		{"unknown consistency", url.Values{"consistency": {"sometimes"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := h.raw(t, http.MethodGet, listTarget+"?"+tt.query.Encode(), nil, nil)
			wantJSONError(t, resp, body, http.StatusBadRequest)
		})
	}
	// The client surfaces the prefix 400 as a StatusError.
	_, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{Prefix: "/"})
	wantStatus(t, err, http.StatusBadRequest, 0)
}

// TestListMissingStore checks a store that was never written lists as 404
// (the only deliberate difference from Fastly is that a write creates it),
// while a store emptied by deletes still exists.
func TestListMissingStore(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		_, err := h.c.ListKeys(t.Context(), "never-written", upstream.ListOptions{})
		wantStatus(t, err, http.StatusNotFound, 0)
		resp, body := h.raw(t, http.MethodGet, "/resources/stores/kv/never-written/keys", nil, nil)
		wantJSONError(t, resp, body, http.StatusNotFound)

		h.put(t, "k", "v", upstream.PutOptions{})
		if err := h.c.DeleteItem(t.Context(), storeID, "k", upstream.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		page, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})
		if err != nil {
			t.Fatalf("listing an emptied store: %v", err)
		}
		if len(page.Keys) != 0 || page.NextCursor != "" {
			t.Errorf("emptied store lists %q cursor %q", page.Keys, page.NextCursor)
		}
	})
}

// TestStoresAreSeparate checks that the same key in two stores is two
// items.
func TestStoresAreSeparate(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		for _, s := range []string{"one", "two"} {
			if err := h.c.PutItem(t.Context(), s, "k", []byte(s), upstream.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range []string{"one", "two"} {
			item, err := h.c.GetItem(t.Context(), s, "k")
			if err != nil || string(item.Value) != s {
				t.Errorf("store %s: %v, %v", s, item, err)
			}
		}
	})
}

// TestUnusualValidKeys checks that keys Fastly accepts but that are awkward
// in a URL (escaped slashes, '%', spaces, brackets, unicode, the maximum
// length) round-trip through the client's escaping and the store's routing.
func TestUnusualValidKeys(t *testing.T) {
	t.Parallel()
	keys := []string{
		"a/b c%", "users/42", "a//b", "a/", "x*", "[k]", "a:b", "ключ", "a+b=c", "%2F", "100%",
		"a..b", ".a", strings.Repeat("k", upstream.MaxKeyBytes),
	}
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		for i, k := range keys {
			h.put(t, k, strconv.Itoa(i), upstream.PutOptions{Metadata: "m"})
		}
		for i, k := range keys {
			if got := string(h.get(t, k).Value); got != strconv.Itoa(i) {
				t.Errorf("key %q = %q, want %q", k, got, strconv.Itoa(i))
			}
		}
		want := slices.Clone(keys)
		slices.Sort(want)
		if got := h.listAll(t, upstream.ListOptions{}); !slices.Equal(got, want) {
			t.Errorf("listed %q, want %q", got, want)
		}
		for _, k := range keys {
			if err := h.c.DeleteItem(t.Context(), storeID, k, upstream.DeleteOptions{}); err != nil {
				t.Errorf("delete %q: %v", k, err)
			}
		}
	})
}

// TestKeyRuleViolations checks every item endpoint refuses keys that break
// Fastly's rules with a 400 and a JSON body, before touching the store.
func TestKeyRuleViolations(t *testing.T) {
	t.Parallel()
	// "." and ".." are left out: as bare path segments Go's ServeMux
	// redirects them before the handler runs (see the report).
	keys := map[string]string{
		"1025 bytes":      strings.Repeat("k", upstream.MaxKeyBytes+1),
		"invalid UTF-8":   "a\xffb",
		"dot segment":     "a/./b",
		"dot-dot prefix":  "../x",
		"dot prefix":      "./x",
		"trailing dot":    "a/.",
		"trailing dotdot": "a/..",
		"acme challenge":  ".well-known/acme-challenge/x",
		"CR":              "a\rb",
		"LF":              "a\nb",
		"hash":            "a#b",
		"semicolon":       "a;b",
		"question mark":   "a?b",
		"caret":           "a^b",
		"pipe":            "a|b",
		"space":           " ",
		"NUL":             "\x00",
		"tab":             "\t",
		"U+FFFE":          "\uFFFE",
		"U+FFFF":          "\uFFFF",
	}
	h := newHarness(t, localstore.Config{})
	for name, key := range keys {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead} {
			t.Run(name+"/"+method, func(t *testing.T) {
				t.Parallel()
				var body io.Reader
				if method == http.MethodPut {
					body = strings.NewReader("v")
				}
				resp, raw := h.raw(t, method, itemTarget(key), nil, body)
				if method == http.MethodHead {
					// HEAD has no body to check.
					if resp.StatusCode != http.StatusBadRequest {
						t.Errorf("status = %d, want 400", resp.StatusCode)
					}
					return
				}
				wantJSONError(t, resp, raw, http.StatusBadRequest)
			})
		}
	}
	t.Run("nothing was written", func(t *testing.T) {
		t.Parallel()
		_, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})
		wantStatus(t, err, http.StatusNotFound, 0)
	})
}

// TestValueTooLarge checks MaxValueBytes for a declared length and for a
// chunked body of unknown length, and that the refused value is not stored.
func TestValueTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 16
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{name: "at the limit", size: limit, want: http.StatusOK},
		{name: "one over", size: limit + 1, want: http.StatusRequestEntityTooLarge},
		{name: "far over", size: 64 << 10, want: http.StatusRequestEntityTooLarge},
		{name: "chunked at the limit", size: limit, chunked: true, want: http.StatusOK},
		{name: "chunked one over", size: limit + 1, chunked: true, want: http.StatusRequestEntityTooLarge},
		{name: "chunked far over", size: 64 << 10, chunked: true, want: http.StatusRequestEntityTooLarge},
		{name: "empty", size: 0, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, localstore.Config{MaxValueBytes: limit})
			value := bytes.Repeat([]byte("v"), tt.size)
			var body io.Reader = bytes.NewReader(value)
			if tt.chunked {
				// A reader of unknown type has no known length, so the
				// request goes out chunked.
				body = io.MultiReader(bytes.NewReader(value))
			}
			resp, raw := h.raw(t, http.MethodPut, itemTarget("k"), nil, body)
			if tt.want != http.StatusOK {
				wantJSONError(t, resp, raw, tt.want)
				_, err := h.c.GetItem(t.Context(), storeID, "k")
				wantStatus(t, err, http.StatusNotFound, 0)
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d %s", resp.StatusCode, raw)
			}
			if got := h.get(t, "k").Value; !bytes.Equal(got, value) {
				t.Errorf("stored %d bytes, want %d", len(got), len(value))
			}
		})
	}
	// The client reports the 413 as a StatusError.
	h := newHarness(t, localstore.Config{MaxValueBytes: limit})
	err := h.c.PutItem(t.Context(), storeID, "k", make([]byte, limit+1), upstream.PutOptions{})
	wantStatus(t, err, http.StatusRequestEntityTooLarge, 0)
}

// TestWriteBadRequests checks PUT and DELETE refuse malformed flags and
// headers with a 400 JSON body and leave the store untouched.
func TestWriteBadRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		query  string
		header http.Header
	}{
		{name: "add and append", method: http.MethodPut, query: "?add=true&append=true"},
		{name: "append and prepend", method: http.MethodPut, query: "?append=true&prepend=true"},
		{name: "add and prepend", method: http.MethodPut, query: "?add=true&prepend=true"},
		{name: "add not a bool", method: http.MethodPut, query: "?add=maybe"},
		{name: "background_fetch not a bool", method: http.MethodPut, query: "?background_fetch=yes"},
		{name: "generation not a number", method: http.MethodPut, header: http.Header{"If-Generation-Match": {"abc"}}},
		{name: "generation negative", method: http.MethodPut, header: http.Header{"If-Generation-Match": {"-1"}}},
		{name: "generation fractional", method: http.MethodPut, header: http.Header{"If-Generation-Match": {"1.5"}}},
		{name: "generation overflows u64", method: http.MethodPut, header: http.Header{"If-Generation-Match": {"18446744073709551616"}}},
		{name: "ttl zero", method: http.MethodPut, header: http.Header{"time_to_live_sec": {"0"}}},
		{name: "ttl negative", method: http.MethodPut, header: http.Header{"time_to_live_sec": {"-1"}}},
		{name: "ttl not a number", method: http.MethodPut, header: http.Header{"time_to_live_sec": {"x"}}},
		{name: "ttl fractional", method: http.MethodPut, header: http.Header{"time_to_live_sec": {"1.5"}}},
		{name: "metadata 2001 bytes", method: http.MethodPut, header: http.Header{"Metadata": {strings.Repeat("m", upstream.MaxMetadataBytes+1)}}},
		{name: "delete generation not a number", method: http.MethodDelete, header: http.Header{"If-Generation-Match": {"x"}}},
		{name: "delete force not a bool", method: http.MethodDelete, query: "?force=maybe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, localstore.Config{})
			h.put(t, "k", "old", upstream.PutOptions{Metadata: "meta"})
			before := h.get(t, "k")
			var body io.Reader
			if tt.method == http.MethodPut {
				body = strings.NewReader("new")
			}
			resp, raw := h.raw(t, tt.method, itemTarget("k")+tt.query, tt.header, body)
			wantJSONError(t, resp, raw, http.StatusBadRequest)
			after := h.get(t, "k")
			if string(after.Value) != "old" || after.Metadata != "meta" || after.Generation != before.Generation {
				t.Errorf("a refused request changed the item to %q/%q/%d", after.Value, after.Metadata, after.Generation)
			}
		})
	}
}

// TestMetadataLimit checks the 2000-byte metadata boundary end to end.
func TestMetadataLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	meta := strings.Repeat("m", upstream.MaxMetadataBytes)
	h.put(t, "k", "v", upstream.PutOptions{Metadata: meta})
	if got := h.get(t, "k").Metadata; got != meta {
		t.Errorf("metadata of %d bytes came back as %d bytes", len(meta), len(got))
	}
	err := h.c.PutItem(t.Context(), storeID, "k", []byte("v"), upstream.PutOptions{Metadata: meta + "m"})
	wantStatus(t, err, http.StatusBadRequest, 0)
}

// TestRequestsCounter checks Requests() counts every request that reached
// the store, whatever its outcome; tests elsewhere use it to prove a call
// was never forwarded.
func TestRequestsCounter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	if n := h.store.Requests(); n != 0 {
		t.Fatalf("fresh store counted %d requests", n)
	}
	h.put(t, "k", "v", upstream.PutOptions{})                               // 200
	h.get(t, "k")                                                           // 200
	_, _ = h.c.GetItem(t.Context(), storeID, "missing")                     // 404
	_, _ = h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})       // 200
	_, _ = h.raw(t, http.MethodGet, itemTarget("a#b"), nil, nil)            // 400
	_, _ = h.raw(t, http.MethodHead, itemTarget("k"), nil, nil)             // 200
	_, _ = h.raw(t, http.MethodPost, itemTarget("k"), nil, nil)             // 405
	_, _ = h.raw(t, http.MethodGet, "/not/an/endpoint", nil, nil)           // 404
	_ = h.c.DeleteItem(t.Context(), storeID, "k", upstream.DeleteOptions{}) // 204
	if n := h.store.Requests(); n != 9 {
		t.Errorf("Requests() = %d, want 9", n)
	}
}

// TestConcurrentWriters checks the store serialises conditional writes:
// of many simultaneous adds exactly one wins, and a compare-and-set counter
// loses no increment.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		const writers = 16
		var wins, conflicts sync.WaitGroup
		var mu sync.Mutex
		won, lost := 0, 0
		for i := range writers {
			wins.Go(func() {
				err := h.c.PutItem(context.Background(), storeID, "once", []byte(strconv.Itoa(i)), upstream.PutOptions{Mode: upstream.PutAdd})
				mu.Lock()
				defer mu.Unlock()
				if se, ok := errors.AsType[*upstream.StatusError](err); ok && se.Status == http.StatusPreconditionFailed {
					lost++
				} else if err == nil {
					won++
				} else {
					t.Errorf("add: %v", err)
				}
			})
		}
		wins.Wait()
		if won != 1 || lost != writers-1 {
			t.Errorf("adds: %d won and %d lost, want 1 and %d", won, lost, writers-1)
		}

		h.put(t, "counter", "0", upstream.PutOptions{})
		const incrementers, each = 4, 5
		for range incrementers {
			conflicts.Go(func() {
				for done := 0; done < each; {
					item, err := h.c.GetItem(context.Background(), storeID, "counter")
					if err != nil {
						t.Errorf("get: %v", err)
						return
					}
					n, _ := strconv.Atoi(string(item.Value))
					err = h.c.PutItem(context.Background(), storeID, "counter", []byte(strconv.Itoa(n+1)),
						upstream.PutOptions{IfGenerationMatch: new(item.Generation)})
					if se, ok := errors.AsType[*upstream.StatusError](err); ok && se.Status == http.StatusPreconditionFailed {
						continue // lost the race; read again
					}
					if err != nil {
						t.Errorf("put: %v", err)
						return
					}
					done++
				}
			})
		}
		conflicts.Wait()
		if got := string(h.get(t, "counter").Value); got != strconv.Itoa(incrementers*each) {
			t.Errorf("counter = %s, want %d", got, incrementers*each)
		}
	})
}

// TestPersistence checks the bbolt backend keeps items across a restart,
// with value, metadata, generation, Last-Modified and expiry intact, and
// that generations keep increasing after it even when the clock has
// stepped back.
func TestPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newClock()
	items := []struct {
		key, value, meta string
		ttl              time.Duration
	}{
		{"a", "alpha", "m-a", 0},
		{"b/c", "beta", "", 0},
		{"ttl", "short", "m", time.Hour},
		{"empty", "", "meta-only", 0},
	}

	before := map[string]*upstream.Item{}
	var maxGen uint64
	func() {
		h := openHarness(t, localstore.Config{Dir: dir, Now: clock.Now})
		defer h.close(t)
		for _, it := range items {
			h.put(t, it.key, it.value, upstream.PutOptions{Metadata: it.meta, TimeToLive: it.ttl})
			clock.Advance(time.Second)
		}
		h.put(t, "deleted", "x", upstream.PutOptions{})
		if err := h.c.DeleteItem(t.Context(), storeID, "deleted", upstream.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			item := h.get(t, it.key)
			before[it.key] = item
			maxGen = max(maxGen, item.Generation)
		}
	}()

	// Reopen two hours before the first write: a clock that stepped
	// back must not hand out an old generation again.
	clock.Advance(-2 * time.Hour)
	h := newHarness(t, localstore.Config{Dir: dir, Now: clock.Now})
	for _, it := range items {
		got := h.get(t, it.key)
		want := before[it.key]
		if !bytes.Equal(got.Value, want.Value) || got.Metadata != want.Metadata ||
			got.Generation != want.Generation || !got.LastModified.Equal(want.LastModified) {
			t.Errorf("%s after restart = %+v, want %+v", it.key, got, want)
		}
	}
	if _, err := h.c.GetItem(t.Context(), storeID, "deleted"); err == nil {
		t.Error("a deleted item came back after the restart")
	}
	want := []string{"a", "b/c", "empty", "ttl"}
	if got := h.listAll(t, upstream.ListOptions{}); !slices.Equal(got, want) {
		t.Errorf("listed %q after restart, want %q", got, want)
	}

	h.put(t, "new", "v", upstream.PutOptions{})
	if g := h.get(t, "new").Generation; g <= maxGen {
		t.Errorf("first generation after restart %d, not above %d from before it", g, maxGen)
	}

	// The expiry survived too.
	clock.Advance(3 * time.Hour)
	_, err := h.c.GetItem(t.Context(), storeID, "ttl")
	wantStatus(t, err, http.StatusNotFound, 0)
}
