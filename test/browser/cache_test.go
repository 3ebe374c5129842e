package browser_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// cacheReaders are cache.ts's readers, as it names them, with the
// encoding their GETs name: Connect JSON GETs with no deadline (simple
// cross-origin requests, unless a token goes with them) and Connect
// binary GETs with one (preflighted, for Connect-Timeout-Ms).
var cacheReaders = []struct{ name, encoding string }{
	{"connect-json-get", "json"},
	{"connect-proto-get-deadline", "proto"},
}

const cacheStorePrefix, cacheKey = "cache", "doc"

// The item's values, before and after the change: of some size, so that
// a 304's saving is real.
var (
	cacheBefore = bytes.Repeat([]byte("first value. "), 2048)
	cacheAfter  = bytes.Repeat([]byte("second value! "), 2048)
)

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

// cachePage is one cache.ts page, on its own origin, calling its own
// kvgate.
type cachePage struct {
	page *httptest.Server
	st   *kvtest.Stack
	url  string

	mu   sync.Mutex
	seen map[string]*cacheSteps
}

// serveCachePage starts kvgate, with authn as its auth settings, and a
// cache.ts page on an origin on kvgate's list; the page sends token, when
// set, as a bearer token. The page's /step route counts the store's reads
// after each step, and makes the change.
func serveCachePage(t *testing.T, bundle string, authn auth.Config, token string) *cachePage {
	t.Helper()
	p := &cachePage{seen: map[string]*cacheSteps{}}
	// The page's origin must be on kvgate's list, so the page is served
	// first and learns of the stack (under mu) once kvgate runs.
	p.mu.Lock()
	defer p.mu.Unlock()
	p.page = servePage(t, bundle, func(mux *http.ServeMux) { mux.HandleFunc("POST /step", p.step) })
	p.st = kvtest.Start(t, kvtest.Options{CORS: crossorigin.Config{Origins: []string{p.page.URL}}, Auth: authn})
	for _, reader := range cacheReaders {
		if err := p.st.Store.PutItems(cacheStorePrefix+"-"+reader.name, []localstore.Item{{Key: cacheKey, Value: cacheBefore}}); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{"kvgate": {p.st.URL}, "store": {cacheStorePrefix}, "key": {cacheKey}}
	if token != "" {
		q.Set("token", token)
	}
	p.url = p.page.URL + "/?" + q.Encode()
	return p
}

// step records a step of one of the page's readers; the change goes
// straight to the store, so kvgate learns of it only when it asks.
func (p *cachePage) step(w http.ResponseWriter, r *http.Request) {
	reader, step := r.URL.Query().Get("reader"), r.URL.Query().Get("step")
	p.mu.Lock()
	defer p.mu.Unlock()
	store := p.st.Store
	if step == "change" {
		if err := store.PutItems(cacheStorePrefix+"-"+reader, []localstore.Item{{Key: cacheKey, Value: cacheAfter}}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	s := p.seen[reader]
	if s == nil {
		s = &cacheSteps{}
		p.seen[reader] = s
	}
	s.steps = append(s.steps, step)
	s.reads = append(s.reads, upstreamReads{Gets: store.Count(localstore.RequestGet), Heads: store.Count(localstore.RequestHead)})
}

// stepsOf returns what the /step route saw of reader.
func (p *cachePage) stepsOf(reader string) *cacheSteps {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[reader]
}

// TestBrowserHTTPCache reads an item with Connect-Web's GetItem over
// Connect GET (useHttpGet), from another origin than kvgate's, and checks
// that Chromium's own HTTP cache keeps the answer and revalidates it with
// If-None-Match: kvgate answers 304 after a HEAD alone, and the page still
// gets the whole item; once the item changed on the store, the
// revalidation costs a HEAD and a GET and the page gets the new value,
// which the cache keeps in turn. With a bearer token the answers are
// private, and the browser's cache keeps and revalidates them all the
// same.
func TestBrowserHTTPCache(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	bundle := b.bundle(t, "cache.ts")

	const token = "kvg-test-browser-cache-7d1e"
	sum := sha256.Sum256([]byte(token))
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	file := fmt.Sprintf("tokens:\n  - name: reader\n    sha256: %q\n    stores: [\"*\"]\n    allow: [read]\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(tokens, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name         string
		auth         auth.Config
		token        string
		cacheControl string
	}{
		{name: "open", cacheControl: "no-cache"},
		{name: "token", auth: auth.Config{TokensFile: tokens}, token: token, cacheControl: "private, no-cache"},
	}
	pages := make([]*cachePage, len(cases))
	urls := make([]string, len(cases))
	for i, tc := range cases {
		pages[i] = serveCachePage(t, bundle, tc.auth, tc.token)
		urls[i] = pages[i].url
	}
	driven := b.drive(t, urls...)

	for i, tc := range cases {
		p, seen := pages[i], driven[i]
		for _, res := range seen.Responses {
			t.Logf("%s: browser saw %s %s: %d, If-None-Match %q, ETag %q, Cache-Control %q, %d bytes",
				tc.name, res.Method, res.URL, res.Status, res.IfNoneMatch, res.ETag, res.CacheControl, res.EncodedBytes)
		}
		for _, rd := range cacheReaders {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				checkCacheReader(t, p, seen, rd.name, rd.encoding, tc.cacheControl)
			})
		}
	}
}

// checkCacheReader checks what one reader of a cache.ts page saw, what
// reached the store at each of its steps, and what crossed the wire.
func checkCacheReader(t *testing.T, p *cachePage, seen drivenPage, reader, encoding, cacheControl string) {
	t.Helper()
	var res struct {
		Failed *rpcError   `json:"failed"`
		Reads  []cacheRead `json:"reads"`
	}
	decode(t, seen.Result, reader, &res)
	if res.Failed != nil || len(res.Reads) != 4 {
		t.Fatalf("the page saw %+v; want four reads", res)
	}
	reads := res.Reads
	wantSteps := []string{"start", "read", "read", "change", "read", "read"}
	s := p.stepsOf(reader)
	if s == nil || strings.Join(s.steps, " ") != strings.Join(wantSteps, " ") {
		t.Fatalf("the page's steps were %+v; want %q", s, wantSteps)
	}
	firstGen, secondGen := reads[0].Generation, reads[2].Generation
	if firstGen == secondGen {
		t.Fatalf("the item's generation %s did not change with its value", firstGen)
	}

	// What the page's script saw: every read a whole item with its ETag
	// (exposed across origins), never not_modified, which only answers
	// if_generation_not_match.
	wantValues := [][]byte{cacheBefore, cacheBefore, cacheAfter, cacheAfter}
	wantGens := []string{firstGen, firstGen, secondGen, secondGen}
	for i, r := range reads {
		sum := sha256.Sum256(wantValues[i])
		if r.Size != len(wantValues[i]) || r.SHA256 != hex.EncodeToString(sum[:]) ||
			r.Generation != wantGens[i] || r.ETag != etagOf(t, wantGens[i]) || r.NotModified {
			t.Errorf("read %d: %+v; want the %s value (%d bytes), generation %s, its ETag",
				i+1, r, [...]string{"first", "first", "second", "second"}[i], len(wantValues[i]), wantGens[i])
		}
	}

	// What reached the store: a GET for the first read, a HEAD alone to
	// revalidate an unchanged item, a HEAD and a GET once it changed.
	wantReads := []upstreamReads{{Gets: 1}, {Heads: 1}, {}, {Gets: 1, Heads: 1}, {Heads: 1}}
	for i, want := range wantReads {
		if got := s.reads[i+1].minus(s.reads[i]); got != want {
			t.Errorf("between steps %s and %s the store saw %+v; want %+v", s.steps[i], s.steps[i+1], got, want)
		}
	}

	// What crossed the wire: the cache's If-None-Match on every read but
	// the first, and kvgate's 304s, which carry no value.
	var gets []seenResponse
	for _, r := range seen.Responses {
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
		if g.Status != w.Status || g.IfNoneMatch != w.IfNoneMatch || g.ETag != w.ETag || g.CacheControl != cacheControl {
			t.Errorf("GET %d: status %d, If-None-Match %q, ETag %q, Cache-Control %q; want %d, %q, %q, %q",
				i+1, g.Status, g.IfNoneMatch, g.ETag, g.CacheControl, w.Status, w.IfNoneMatch, w.ETag, cacheControl)
		}
		if size := int64(len(wantValues[i])); (w.Status == http.StatusOK) != (g.EncodedBytes >= size) {
			t.Errorf("GET %d: status %d in %d bytes, for a value of %d", i+1, g.Status, g.EncodedBytes, size)
		}
	}
}

// etagOf is the ETag kvgate gives generation gen, as the page reports it.
func etagOf(t *testing.T, gen string) string {
	t.Helper()
	if _, err := strconv.ParseUint(gen, 10, 64); err != nil {
		t.Fatalf("generation %q: %v", gen, err)
	}
	return strconv.Quote(gen)
}
