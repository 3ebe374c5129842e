package localstore_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

const storesTarget = "/resources/stores/kv"

func storeTarget(id string) string { return storesTarget + "/" + url.PathEscape(id) }

// storeDetails is a store as the store endpoints answer it.
type storeDetails struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

type storeList struct {
	Data []storeDetails `json:"data"`
	Meta struct {
		Limit      int     `json:"limit"`
		NextCursor *string `json:"next_cursor"`
		Total      int     `json:"total"`
	} `json:"meta"`
}

type apiError struct {
	Msg    string `json:"msg"`
	Detail string `json:"detail"`
}

// storeIDPattern is the form of Fastly's store ids: the recorded one,
// iaa48y0oxw13s12xpfdkk9, is 22 lowercase letters and digits.
var storeIDPattern = regexp.MustCompile(`^[a-z0-9]{22}$`)

// storeTimePattern is the form of created_at and updated_at as recorded.
var storeTimePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)

// call sends a request with a string body and returns the status and body.
func (h *harness) call(t *testing.T, method, target, body string) (*http.Response, []byte) {
	t.Helper()
	var header http.Header
	if body != "" {
		header = http.Header{"Content-Type": {"application/json"}}
	}
	return h.raw(t, method, target, header, strings.NewReader(body))
}

// decodeAs decodes a JSON body into a T, failing the test when it is not.
func decodeAs[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return v
}

// jsonErrorOf checks an answer is status in Fastly's JSON error shape
// (wantJSONError) and returns the error.
func jsonErrorOf(t *testing.T, resp *http.Response, body []byte, status int) apiError {
	t.Helper()
	wantJSONError(t, resp, body, status)
	return decodeAs[apiError](t, body)
}

func (h *harness) createStore(t *testing.T, name string) storeDetails {
	t.Helper()
	resp, body := h.call(t, http.MethodPost, storesTarget, `{"name":`+jsonQuote(name)+`}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating %q: status %d, body %q", name, resp.StatusCode, body)
	}
	return decodeAs[storeDetails](t, body)
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (h *harness) getStore(t *testing.T, id string) (int, storeDetails) {
	t.Helper()
	resp, body := h.call(t, http.MethodGet, storeTarget(id), "")
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, storeDetails{}
	}
	return resp.StatusCode, decodeAs[storeDetails](t, body)
}

func (h *harness) listStores(t *testing.T, query string) storeList {
	t.Helper()
	resp, body := h.call(t, http.MethodGet, storesTarget+query, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("listing stores%s: status %d, body %q", query, resp.StatusCode, body)
	}
	return decodeAs[storeList](t, body)
}

// TestStoreEndpoints covers each store endpoint's answers and errors, on
// both backends.
func TestStoreEndpoints(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"create answers 201 with the details", func(t *testing.T, h *harness) {
			resp, body := h.call(t, http.MethodPost, storesTarget, `{"name":"first"}`)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			d := decodeAs[storeDetails](t, body)
			if !storeIDPattern.MatchString(d.ID) || d.Name != "first" {
				t.Errorf("details %+v", d)
			}
			if !storeTimePattern.MatchString(d.CreatedAt) || d.UpdatedAt != d.CreatedAt {
				t.Errorf("times %q, %q", d.CreatedAt, d.UpdatedAt)
			}
			if _, got := h.getStore(t, d.ID); got != d {
				t.Errorf("GET = %+v, created %+v", got, d)
			}
		}},
		{"create takes Fastly's locations", func(t *testing.T, h *harness) {
			for _, loc := range []string{"US", "EU", "ASIA", "AUS"} {
				resp, body := h.call(t, http.MethodPost, storesTarget+"?location="+loc, `{"name":"in-`+loc+`"}`)
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("location %s: status %d, body %q", loc, resp.StatusCode, body)
				}
			}
		}},
		{"create refuses other locations", func(t *testing.T, h *harness) {
			for _, loc := range []string{"", "us", "MARS"} {
				resp, body := h.call(t, http.MethodPost, storesTarget+"?location="+loc, `{"name":"x"}`)
				wantJSONError(t, resp, body, http.StatusBadRequest)
			}
			if l := h.listStores(t, ""); len(l.Data) != 0 {
				t.Errorf("refused creates left stores %+v", l.Data)
			}
		}},
		{"create refuses a bad body", func(t *testing.T, h *harness) {
			for _, b := range []string{"", "{}", `{"name":""}`, `{"name":5}`, "not json", `["name"]`} {
				resp, body := h.call(t, http.MethodPost, storesTarget, b)
				wantJSONError(t, resp, body, http.StatusBadRequest)
			}
		}},
		{"create refuses a name in use with 409", func(t *testing.T, h *harness) {
			h.createStore(t, "dup")
			resp, body := h.call(t, http.MethodPost, storesTarget, `{"name":"dup"}`)
			wantJSONError(t, resp, body, http.StatusConflict)
			if l := h.listStores(t, ""); len(l.Data) != 1 {
				t.Errorf("%d stores, want 1", len(l.Data))
			}
		}},
		{"ids are distinct", func(t *testing.T, h *harness) {
			seen := map[string]bool{}
			for i := range 20 {
				d := h.createStore(t, fmt.Sprint("s", i))
				if seen[d.ID] {
					t.Fatalf("id %s drawn twice", d.ID)
				}
				seen[d.ID] = true
			}
		}},
		{"get unknown answers 404", func(t *testing.T, h *harness) {
			resp, body := h.call(t, http.MethodGet, storeTarget("nosuchstore"), "")
			e := jsonErrorOf(t, resp, body, http.StatusNotFound)
			if !strings.Contains(e.Detail, "nosuchstore") {
				t.Errorf("detail %q does not name the store", e.Detail)
			}
		}},
		{"rename", func(t *testing.T, h *harness) {
			d := h.createStore(t, "old")
			h.createStore(t, "other")
			resp, body := h.call(t, http.MethodPut, storeTarget(d.ID), `{"name":"new"}`)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			got := decodeAs[storeDetails](t, body)
			if got.ID != d.ID || got.Name != "new" || got.CreatedAt != d.CreatedAt {
				t.Errorf("renamed %+v, from %+v", got, d)
			}
			if _, g := h.getStore(t, d.ID); g != got {
				t.Errorf("GET = %+v, want %+v", g, got)
			}
			if l := h.listStores(t, "?name=old"); len(l.Data) != 0 {
				t.Errorf("old name still listed: %+v", l.Data)
			}
			// Its own name again is no conflict.
			if resp, body := h.call(t, http.MethodPut, storeTarget(d.ID), `{"name":"new"}`); resp.StatusCode != http.StatusOK {
				t.Errorf("same name: status %d, body %q", resp.StatusCode, body)
			}
		}},
		{"rename errors", func(t *testing.T, h *harness) {
			d := h.createStore(t, "a")
			h.createStore(t, "b")
			resp, body := h.call(t, http.MethodPut, storeTarget(d.ID), `{"name":"b"}`)
			wantJSONError(t, resp, body, http.StatusConflict)
			resp, body = h.call(t, http.MethodPut, storeTarget(d.ID), `{"name":""}`)
			wantJSONError(t, resp, body, http.StatusBadRequest)
			resp, body = h.call(t, http.MethodPut, storeTarget("nosuchstore"), `{"name":"c"}`)
			wantJSONError(t, resp, body, http.StatusNotFound)
			if _, g := h.getStore(t, d.ID); g.Name != "a" {
				t.Errorf("name %q after refused renames", g.Name)
			}
		}},
		{"delete an empty store", func(t *testing.T, h *harness) {
			d := h.createStore(t, "gone")
			resp, body := h.call(t, http.MethodDelete, storeTarget(d.ID), "")
			if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
				t.Fatalf("status %d, body %q; want 204, no body", resp.StatusCode, body)
			}
			if code, _ := h.getStore(t, d.ID); code != http.StatusNotFound {
				t.Errorf("GET after delete = %d", code)
			}
			resp, body = h.call(t, http.MethodDelete, storeTarget(d.ID), "")
			wantJSONError(t, resp, body, http.StatusNotFound)
			// The name is free again.
			h.createStore(t, "gone")
		}},
		{"delete a store with items answers 409", func(t *testing.T, h *harness) {
			d := h.createStore(t, "full")
			if err := h.c.PutItem(t.Context(), d.ID, "k", []byte("v"), upstream.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			resp, body := h.call(t, http.MethodDelete, storeTarget(d.ID), "")
			e := jsonErrorOf(t, resp, body, http.StatusConflict)
			if !strings.Contains(string(body), "A KV store must be empty before it can be deleted") {
				t.Errorf("error %+v", e)
			}
			if err := h.c.DeleteItem(t.Context(), d.ID, "k", upstream.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if resp, body := h.call(t, http.MethodDelete, storeTarget(d.ID), ""); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("emptied: status %d, body %q", resp.StatusCode, body)
			}
			// Its items went with it: a new store of the same id starts empty.
			if _, err := h.c.GetItem(t.Context(), d.ID, "k"); err == nil {
				t.Error("item survived its store")
			}
		}},
		{"list by name", func(t *testing.T, h *harness) {
			h.createStore(t, "x")
			y := h.createStore(t, "y")
			l := h.listStores(t, "?name=y")
			if len(l.Data) != 1 || l.Data[0] != y || l.Meta.Total != 1 || l.Meta.NextCursor != nil {
				t.Errorf("name=y: %+v", l)
			}
			l = h.listStores(t, "?name=none")
			if l.Data == nil || len(l.Data) != 0 || l.Meta.Total != 0 {
				t.Errorf("name=none: %+v", l)
			}
		}},
		{"list refuses a bad limit or cursor", func(t *testing.T, h *harness) {
			for _, q := range []string{"?limit=0", "?limit=-1", "?limit=x", "?cursor=%25%25", "?cursor=AAAA"} {
				resp, body := h.call(t, http.MethodGet, storesTarget+q, "")
				wantJSONError(t, resp, body, http.StatusBadRequest)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				tc.run(t, newHarness(t, opts))
			})
		})
	}
}

// TestStoreListPaging pages through more stores than a page holds.
func TestStoreListPaging(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 3, 7, 8} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				const n = 7
				var want []string
				for i := range n {
					want = append(want, h.createStore(t, fmt.Sprint("store-", i)).ID)
				}
				slices.Sort(want)
				var got []string
				query := fmt.Sprint("?limit=", limit)
				for pages := 1; ; pages++ {
					l := h.listStores(t, query)
					if l.Meta.Limit != limit || l.Meta.Total != n {
						t.Errorf("page %d meta %+v", pages, l.Meta)
					}
					for _, d := range l.Data {
						got = append(got, d.ID)
					}
					if l.Meta.NextCursor == nil {
						if wantPages := (n + limit - 1) / limit; pages != wantPages {
							t.Errorf("%d pages, want %d", pages, wantPages)
						}
						break
					}
					if len(l.Data) != limit || pages > n {
						t.Fatalf("page %d has %d stores and a cursor", pages, len(l.Data))
					}
					query = fmt.Sprint("?limit=", limit, "&cursor=", url.QueryEscape(*l.Meta.NextCursor))
				}
				if !slices.Equal(got, want) {
					t.Errorf("listed %q, want %q", got, want)
				}
			})
		})
	}
}

// TestStoreListDefaultLimit checks the default page of 1000 and that a
// larger limit is capped to it, as the key listing does.
func TestStoreListDefaultLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	for _, q := range []string{"", "?limit=5000"} {
		if l := h.listStores(t, q); l.Meta.Limit != 1000 {
			t.Errorf("list%s: limit %d, want 1000", q, l.Meta.Limit)
		}
	}
}

// TestStorePersistence checks stores, their names and the implicitly
// created ones survive a reopen of the bbolt file, and a deletion too.
func TestStorePersistence(t *testing.T) {
	t.Parallel()
	opts := localstore.Config{Dir: t.TempDir()}
	h := openHarness(t, opts)
	kept := h.createStore(t, "kept")
	renamed := h.createStore(t, "before")
	gone := h.createStore(t, "gone")
	if resp, body := h.call(t, http.MethodPut, storeTarget(renamed.ID), `{"name":"after"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("rename: %d %q", resp.StatusCode, body)
	}
	if resp, _ := h.call(t, http.MethodDelete, storeTarget(gone.ID), ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if err := h.c.PutItem(t.Context(), "implicit", "k", []byte("v"), upstream.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	before := h.listStores(t, "")
	h.close(t)

	h = newHarness(t, opts)
	after := h.listStores(t, "")
	if !slices.Equal(after.Data, before.Data) || after.Meta != before.Meta {
		t.Errorf("after reopen %+v, before %+v", after, before)
	}
	names := map[string]string{}
	for _, d := range after.Data {
		names[d.ID] = d.Name
	}
	want := map[string]string{kept.ID: "kept", renamed.ID: "after", "implicit": "implicit"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("stores %v, want %v", names, want)
	}
	if item, err := h.c.GetItem(t.Context(), "implicit", "k"); err != nil || string(item.Value) != "v" {
		t.Errorf("item of the implicit store after reopen: %v, %v", item, err)
	}
}

// TestImplicitStores checks a store id that was never created works on its
// first item write without strict ids, and is then a store like any other:
// listed and described under its id as its name, and deletable once empty.
func TestImplicitStores(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		if err := h.c.PutItem(t.Context(), "adhoc", "k", []byte("v"), upstream.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		code, d := h.getStore(t, "adhoc")
		if code != http.StatusOK || d.ID != "adhoc" || d.Name != "adhoc" || !storeTimePattern.MatchString(d.CreatedAt) {
			t.Errorf("GET = %d %+v", code, d)
		}
		if l := h.listStores(t, ""); len(l.Data) != 1 || l.Data[0] != d {
			t.Errorf("listed %+v", l.Data)
		}
		resp, body := h.call(t, http.MethodDelete, storeTarget("adhoc"), "")
		wantJSONError(t, resp, body, http.StatusConflict)
		// A delete with force on an unknown id creates nothing.
		if err := h.c.DeleteItem(t.Context(), "never", "k", upstream.DeleteOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		if code, _ := h.getStore(t, "never"); code != http.StatusNotFound {
			t.Errorf("GET never = %d, want 404", code)
		}
	})
}

// TestStrictStoreIDs checks that with strict store ids every item call on
// an unknown store answers 404 in Fastly's JSON error shape and creates
// nothing, and that a created store takes items.
func TestStrictStoreIDs(t *testing.T) {
	t.Parallel()
	const unknown = "/resources/stores/kv/unknownstore"
	calls := []struct {
		method, target, body string
	}{
		{http.MethodGet, unknown + "/keys/k", ""},
		{http.MethodHead, unknown + "/keys/k", ""},
		{http.MethodPut, unknown + "/keys/k", "v"},
		{http.MethodPut, unknown + "/keys/k?add=true", "v"},
		{http.MethodDelete, unknown + "/keys/k", ""},
		{http.MethodDelete, unknown + "/keys/k?force=true", ""},
		{http.MethodGet, unknown + "/keys", ""},
		{http.MethodPut, unknown + "/batch", `{"key":"k","value":"dg=="}`},
	}
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		opts.StrictStoreIDs = true
		h := newHarness(t, opts)
		for _, c := range calls {
			t.Run(c.method+" "+c.target, func(t *testing.T) {
				resp, body := h.call(t, c.method, c.target, c.body)
				if c.method == http.MethodHead {
					if resp.StatusCode != http.StatusNotFound {
						t.Errorf("status %d, want 404", resp.StatusCode)
					}
					return
				}
				e := jsonErrorOf(t, resp, body, http.StatusNotFound)
				if !strings.Contains(e.Detail, "unknownstore") {
					t.Errorf("detail %q does not name the store", e.Detail)
				}
			})
		}
		if l := h.listStores(t, ""); len(l.Data) != 0 {
			t.Errorf("refused writes created %+v", l.Data)
		}
		d := h.createStore(t, "made")
		if err := h.c.PutItem(t.Context(), d.ID, "k", []byte("v"), upstream.PutOptions{}); err != nil {
			t.Fatalf("PUT into a created store: %v", err)
		}
		if item, err := h.c.GetItem(t.Context(), d.ID, "k"); err != nil || string(item.Value) != "v" {
			t.Errorf("GET = %v, %v", item, err)
		}
	})
}

// TestUnknownRoutesAnswerJSON checks the router's own 404s and 405s come in
// Fastly's JSON error shape, not Go's plain text.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{})
	cases := []struct {
		method, target string
		status         int
		allow          bool
	}{
		{http.MethodGet, "/", http.StatusNotFound, false},
		{http.MethodGet, "/not/an/endpoint", http.StatusNotFound, false},
		{http.MethodGet, "/resources/stores/config", http.StatusNotFound, false},
		{http.MethodGet, "/resources/stores/kv/a/b/c", http.StatusNotFound, false},
		{http.MethodDelete, storesTarget, http.StatusMethodNotAllowed, true},
		{http.MethodPatch, storeTarget("a"), http.StatusMethodNotAllowed, true},
		{http.MethodPost, storeTarget("a"), http.StatusMethodNotAllowed, true},
		{http.MethodPost, itemTarget("k"), http.StatusMethodNotAllowed, true},
		{http.MethodGet, "/resources/stores/kv/a/batch", http.StatusMethodNotAllowed, true},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			t.Parallel()
			resp, body := h.call(t, c.method, c.target, "")
			e := jsonErrorOf(t, resp, body, c.status)
			if !strings.Contains(e.Detail, c.method) {
				t.Errorf("detail %q does not name the method", e.Detail)
			}
			if got := resp.Header.Get("Allow") != ""; got != c.allow {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
}

// TestStoreTimes checks created_at and updated_at are written in UTC to
// the second, as recorded, and that a rename moves only updated_at.
func TestStoreTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 23, 21, 41, 15, 999_000_000, time.FixedZone("CEST", 2*3600))
	// The clock is read on the server's goroutines.
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	h := newHarness(t, localstore.Config{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	d := h.createStore(t, "timed")
	if d.CreatedAt != "2025-06-23 19:41:15" || d.UpdatedAt != d.CreatedAt {
		t.Errorf("times %q, %q", d.CreatedAt, d.UpdatedAt)
	}
	clock.Store(now.Add(time.Hour).UnixNano())
	_, body := h.call(t, http.MethodPut, storeTarget(d.ID), `{"name":"retimed"}`)
	r := decodeAs[storeDetails](t, body)
	if r.CreatedAt != d.CreatedAt || r.UpdatedAt != "2025-06-23 20:41:15" {
		t.Errorf("after rename %+v", r)
	}
}
