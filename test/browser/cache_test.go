package browser_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// cacheReaders are cache.ts's readers, as it names them, with the
// encoding their GETs name: Connect JSON GETs with no deadline (simple
// cross-origin requests) and Connect binary GETs with one (preflighted,
// for Connect-Timeout-Ms).
var cacheReaders = []struct{ name, encoding string }{
	{"connect-json-get", "json"},
	{"connect-proto-get-deadline", "proto"},
}

// upstreamReads counts the reads that reached the local store.
type upstreamReads struct{ Gets, Heads int64 }

func (r upstreamReads) minus(o upstreamReads) upstreamReads {
	return upstreamReads{Gets: r.Gets - o.Gets, Heads: r.Heads - o.Heads}
}

// cacheRead is what cache.ts saw of one GetItem.
type cacheRead struct {
	Size        int    `json:"size"`
	SHA256      string `json:"sha256"`
	Generation  string `json:"generation"`
	NotModified bool   `json:"notModified"`
	ETag        string `json:"etag"`
}

// cacheSteps is what the test's /step route saw of one reader: its steps,
// and the store's read counts after each.
type cacheSteps struct {
	steps []string
	reads []upstreamReads
}

// TestBrowserHTTPCache reads an item with Connect-Web's GetItem over
// Connect GET (useHttpGet), from another origin than kvgate's, and checks
// that Chromium's own HTTP cache keeps the answer and revalidates it with
// If-None-Match: kvgate answers 304 after a HEAD alone, and the page still
// gets the whole item; once the item changed on the store, the
// revalidation costs a HEAD and a GET and the page gets the new value,
// which the cache keeps in turn.
func TestBrowserHTTPCache(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	bundle := b.bundle(t, "cache.ts")

	const prefix, key = "cache", "doc"
	// Values of some size, so that a 304's saving is real.
	before := bytes.Repeat([]byte("first value. "), 2048)
	after := bytes.Repeat([]byte("second value! "), 2048)

	// The page's origin must be on kvgate's list, so the page is served
	// first and learns of the store (under mu) once kvgate runs.
	var (
		mu    sync.Mutex
		store *localstore.Store
		seen  = map[string]*cacheSteps{}
	)
	routes := func(mux *http.ServeMux) {
		mux.HandleFunc("POST /step", func(w http.ResponseWriter, r *http.Request) {
			reader, step := r.URL.Query().Get("reader"), r.URL.Query().Get("step")
			mu.Lock()
			defer mu.Unlock()
			// The change goes straight to the store: kvgate learns of
			// it only when it asks.
			if step == "change" {
				if err := store.PutItems(prefix+"-"+reader, []localstore.Item{{Key: key, Value: after}}); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			s := seen[reader]
			if s == nil {
				s = &cacheSteps{}
				seen[reader] = s
			}
			s.steps = append(s.steps, step)
			s.reads = append(s.reads, upstreamReads{Gets: store.Count(localstore.RequestGet), Heads: store.Count(localstore.RequestHead)})
		})
	}
	page := servePage(t, bundle, routes)
	st := kvtest.Start(t, kvtest.Options{CORS: crossorigin.Config{Origins: []string{page.URL}}})
	mu.Lock()
	store = st.Store
	mu.Unlock()
	for _, reader := range cacheReaders {
		if err := st.Store.PutItems(prefix+"-"+reader.name, []localstore.Item{{Key: key, Value: before}}); err != nil {
			t.Fatal(err)
		}
	}

	pages := b.drive(t, page.URL+"/?"+url.Values{"kvgate": {st.URL}, "store": {prefix}, "key": {key}}.Encode())
	for _, res := range pages[0].Responses {
		t.Logf("browser saw %s %s: %d, If-None-Match %q, ETag %q, %d bytes", res.Method, res.URL, res.Status, res.IfNoneMatch, res.ETag, res.EncodedBytes)
	}

	for _, rd := range cacheReaders {
		reader, encoding := rd.name, rd.encoding
		t.Run(reader, func(t *testing.T) {
			var res struct {
				Failed *rpcError   `json:"failed"`
				Reads  []cacheRead `json:"reads"`
			}
			decode(t, pages[0].Result, reader, &res)
			if res.Failed != nil || len(res.Reads) != 4 {
				t.Fatalf("the page saw %+v; want four reads", res)
			}
			reads := res.Reads
			wantSteps := []string{"start", "read", "read", "change", "read", "read"}
			mu.Lock()
			s := seen[reader]
			mu.Unlock()
			if s == nil || strings.Join(s.steps, " ") != strings.Join(wantSteps, " ") {
				t.Fatalf("the page's steps were %+v; want %q", s, wantSteps)
			}
			firstGen, secondGen := reads[0].Generation, reads[2].Generation
			if firstGen == secondGen {
				t.Fatalf("the item's generation %s did not change with its value", firstGen)
			}

			// What the page's script saw: every read a whole item with
			// its ETag (exposed across origins), never not_modified,
			// which only answers if_generation_not_match.
			wantValues := [][]byte{before, before, after, after}
			wantGens := []string{firstGen, firstGen, secondGen, secondGen}
			for i, r := range reads {
				sum := sha256.Sum256(wantValues[i])
				if r.Size != len(wantValues[i]) || r.SHA256 != hex.EncodeToString(sum[:]) ||
					r.Generation != wantGens[i] || r.ETag != etagOf(t, wantGens[i]) || r.NotModified {
					t.Errorf("read %d: %+v; want the %s value (%d bytes), generation %s, its ETag",
						i+1, r, [...]string{"first", "first", "second", "second"}[i], len(wantValues[i]), wantGens[i])
				}
			}

			// What reached the store: a GET for the first read, a HEAD
			// alone to revalidate an unchanged item, a HEAD and a GET
			// once it changed.
			wantReads := []upstreamReads{{Gets: 1}, {Heads: 1}, {}, {Gets: 1, Heads: 1}, {Heads: 1}}
			for i, want := range wantReads {
				if got := s.reads[i+1].minus(s.reads[i]); got != want {
					t.Errorf("between steps %s and %s the store saw %+v; want %+v", s.steps[i], s.steps[i+1], got, want)
				}
			}

			// What the browser's network saw: the cache's If-None-Match
			// on every read but the first, and kvgate's 304s.
			var gets []seenResponse
			for _, r := range pages[0].Responses {
				if r.Method == http.MethodGet && strings.Contains(r.URL, kvv1connect.KVStoreServiceGetItemProcedure) &&
					strings.Contains(r.URL, "&encoding="+encoding+"&") {
					gets = append(gets, r)
				}
			}
			want := []seenResponse{
				{Status: http.StatusOK, ETag: etagOf(t, firstGen)},
				{Status: http.StatusNotModified, IfNoneMatch: etagOf(t, firstGen), ETag: etagOf(t, firstGen)},
				{Status: http.StatusOK, IfNoneMatch: etagOf(t, firstGen), ETag: etagOf(t, secondGen)},
				{Status: http.StatusNotModified, IfNoneMatch: etagOf(t, secondGen), ETag: etagOf(t, secondGen)},
			}
			if len(gets) != len(want) {
				t.Fatalf("the browser sent %d GetItem GETs for %s; want %d", len(gets), reader, len(want))
			}
			for i, w := range want {
				g := gets[i]
				if g.Status != w.Status || g.IfNoneMatch != w.IfNoneMatch || g.ETag != w.ETag {
					t.Errorf("GET %d: status %d, If-None-Match %q, ETag %q; want %d, %q, %q", i+1, g.Status, g.IfNoneMatch, g.ETag, w.Status, w.IfNoneMatch, w.ETag)
				}
				// A 200 carried the value, a 304 only headers.
				if size := int64(len(wantValues[i])); (w.Status == http.StatusOK) != (g.EncodedBytes >= size) {
					t.Errorf("GET %d: status %d in %d bytes, for a value of %d", i+1, g.Status, g.EncodedBytes, size)
				}
			}
		})
	}
}

// etagOf is the ETag kvgate gives generation gen, as the page reports it.
func etagOf(t *testing.T, gen string) string {
	t.Helper()
	if _, err := strconv.ParseUint(gen, 10, 64); err != nil {
		t.Fatalf("generation %q: %v", gen, err)
	}
	return fmt.Sprintf("%q", gen)
}
