package localstore_test

// Native fuzz targets for the local store's HTTP handlers. Their seed
// corpora (the f.Add calls below and any files under testdata/fuzz/) run as
// plain tests in every `go test`; run one for a while with
//
//	go test -run '^$' -fuzz '^FuzzStoreHandler$' -fuzztime 30s ./upstream/localstore/
//
// or all of them with scripts/fuzz.sh. Each input gets a fresh in-memory
// store, so a failure replays on its own. Every helper here starts with
// "fz" so as not to clash with the package's other tests.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// fzNow is the fuzzed stores' clock: fixed, so nothing expires and the
// seeded item's generation is known.
var fzNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fzSeedGen is the generation of the item fzNewStore writes first: the
// store's generations track the write time in microseconds.
var fzSeedGen = uint64(fzNow.UnixMicro())

const (
	fzStore = "s" // the store fzNewStore seeds
	fzKey   = "k" // the key it seeds there, with fzValue and fzMeta
	fzValue = "v"
	fzMeta  = "m"

	fzItemPrefix = "/resources/stores/kv/"

	fzBatchSuccess = `{"type":"","title":"success","errors":[]}`
)

// fzStoreOptions are small limits, so 413s are cheap to reach.
var fzStoreOptions = localstore.Config{
	MaxValueBytes: 1024,
	MaxBatchBytes: 4096,
	Now:           func() time.Time { return fzNow },
	Logger:        slog.New(slog.DiscardHandler),
}

// fzServe serves one request and checks what every answer must satisfy: a
// status the store documents (a 500 only comes from an injected fault or a
// backend failure, and there is neither), header values that can travel,
// and a JSON body that parses whenever the answer says it is JSON.
func fzServe(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	switch rec.Code {
	case http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusPreconditionFailed, http.StatusRequestEntityTooLarge:
	case http.StatusCreated, http.StatusConflict:
		// A raw store id ending in "?" reaches the store endpoints: a
		// created store, a name in use or a store that is not empty.
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// ServeMux redirects a path it would clean, such as "a//b", and a
		// subtree root without its slash, such as "PUT .../keys".
		if rec.Header().Get("Location") == "" {
			t.Fatalf("%s %s: 301 without a Location", req.Method, req.RequestURI)
		}
	default:
		t.Fatalf("%s %s: unexpected status %d: %s", req.Method, req.RequestURI, rec.Code, rec.Body)
	}
	for name, vs := range rec.Header() {
		for _, v := range vs {
			if !testutil.FieldValueOK(v) {
				t.Fatalf("%s %s: header %s: %q is not a valid field value", req.Method, req.RequestURI, name, v)
			}
		}
	}
	if rec.Header().Get("Content-Type") == "application/json" && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s %s: %d with a JSON Content-Type and a body that is not JSON: %q", req.Method, req.RequestURI, rec.Code, rec.Body)
	}
	if rec.Code >= 400 && rec.Code != http.StatusPreconditionFailed && rec.Header().Get("Content-Type") == "application/json" {
		var e struct {
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Msg == "" {
			// The batch endpoint's 400 is Fastly's batch response instead.
			if _, err := upstream.ParseBatchResponse(rec.Body.Bytes()); err != nil || !strings.Contains(rec.Body.String(), `"errors"`) {
				t.Fatalf("%s %s: %d error body %q is neither {msg} nor a batch response", req.Method, req.RequestURI, rec.Code, rec.Body)
			}
		}
	}
	if rec.Code == http.StatusPreconditionFailed && rec.Body.Len() > 0 {
		t.Fatalf("%s %s: 412 with a body %q; Fastly's is empty", req.Method, req.RequestURI, rec.Body)
	}
	return rec
}

// fzRequest builds a request as a server would hand it to the handler.
// body nil sends none; chunked hides its length.
func fzRequest(method, target string, header http.Header, body []byte, chunked bool) (*http.Request, bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil || strings.ContainsAny(target, " \x7f") {
		return nil, false // no server would route it
	}
	if header == nil {
		header = http.Header{}
	}
	req := &http.Request{
		Method: method, URL: u, RequestURI: target,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Host: "localstore.test", RemoteAddr: "192.0.2.1:1234",
		Body: http.NoBody,
	}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		if chunked {
			req.ContentLength = -1
			req.TransferEncoding = []string{"chunked"}
		}
	}
	return req, true
}

// fzGet reads an item through the handler.
func fzGet(t *testing.T, h http.Handler, store, key string) *httptest.ResponseRecorder {
	t.Helper()
	req, ok := fzRequest(http.MethodGet, fzItemPrefix+url.PathEscape(store)+"/keys/"+url.PathEscape(key), nil, nil, false)
	if !ok {
		t.Fatalf("cannot build a GET of %q/%q", store, key)
	}
	return fzServe(t, h, req)
}

// fzNewStore opens an in-memory store and writes fzKey in fzStore.
func fzNewStore(t *testing.T, opts localstore.Config) http.Handler {
	t.Helper()
	st, err := localstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h := st.Handler()
	req, _ := fzRequest(http.MethodPut, fzItemPrefix+fzStore+"/keys/"+fzKey, http.Header{"Metadata": {fzMeta}}, []byte(fzValue), false)
	if rec := fzServe(t, h, req); rec.Code != http.StatusOK {
		t.Fatalf("seeding PUT: %d %s", rec.Code, rec.Body)
	}
	return h
}

// fzCheckSeedUnchanged checks that the seeded item is as written.
func fzCheckSeedUnchanged(t *testing.T, h http.Handler, after string) {
	t.Helper()
	rec := fzGet(t, h, fzStore, fzKey)
	if rec.Code != http.StatusOK || rec.Body.String() != fzValue || rec.Header().Get("Metadata") != fzMeta ||
		rec.Header().Get("Generation") != strconv.FormatUint(fzSeedGen, 10) {
		t.Fatalf("after %s, which wrote nothing, the seeded item is %d %q metadata %q generation %q",
			after, rec.Code, rec.Body, rec.Header().Get("Metadata"), rec.Header().Get("Generation"))
	}
}

// fzMethods are the methods FuzzStoreHandler picks from.
var fzMethods = [8]string{
	http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete,
	http.MethodPost, http.MethodPatch, http.MethodOptions, http.MethodConnect,
}

// The bits of FuzzStoreHandler's shape byte.
const (
	fzShapeMethod   = 0x07 // index into fzMethods
	fzShapeEndpoint = 0x18 // fzEndpoint << 3
	fzShapeRaw      = 0x20 // store and key go into the path unescaped
	fzShapeChunked  = 0x40 // the body has no known length
)

// The endpoints FuzzStoreHandler aims at.
const (
	fzEndpointItem  = 0 // /resources/stores/kv/{store}/keys/{key}
	fzEndpointList  = 1 // /resources/stores/kv/{store}/keys
	fzEndpointBatch = 2 // /resources/stores/kv/{store}/batch
	fzEndpointOther = 3 // /resources/stores/kv/{store}/{key}
)

func fzShape(method, endpoint int, raw, chunked bool) uint8 {
	s := uint8(method) | uint8(endpoint)<<3
	if raw {
		s |= fzShapeRaw
	}
	if chunked {
		s |= fzShapeChunked
	}
	return s
}

// FuzzStoreHandler sends one request built from fuzzed parts (a method, an
// endpoint, a store and a key, raw or escaped, a query, the headers the
// store reads, a body) to a store holding one item, and checks the answer
// (see fzServe) and its effect: a 200 GET carries a decimal Generation and
// the item's length; a written item reads back with the body and metadata
// sent; a deleted one is gone; a request that wrote nothing left the
// seeded item alone.
func FuzzStoreHandler(f *testing.F) {
	for _, s := range fzStoreSeeds() {
		f.Add(fzShape(s.method, s.endpoint, s.raw, s.chunked), s.store, s.key, s.query, s.ifGen, s.md, s.ttl, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, shape uint8, store, key, query, ifGen, md, ttl string, body []byte) {
		method := fzMethods[shape&fzShapeMethod]
		endpoint := int(shape&fzShapeEndpoint) >> 3
		target := fzStoreTarget(endpoint, shape&fzShapeRaw != 0, store, key, query)
		header, ok := fzStoreHeader(ifGen, md, ttl)
		if !ok {
			return // a server refuses it before any handler sees it
		}
		req, ok := fzRequest(method, target, header, body, shape&fzShapeChunked != 0)
		if !ok {
			return
		}
		h := fzNewStore(t, fzStoreOptions)
		rec := fzServe(t, h, req)
		what := method + " " + target

		if endpoint == fzEndpointItem && rec.Code == http.StatusOK && (method == http.MethodGet || method == http.MethodHead) {
			fzCheckItemAnswer(t, what, method, rec)
		}
		if endpoint == fzEndpointList && rec.Code == http.StatusOK {
			fzCheckListing(t, what, req, rec)
		}
		fzCheckEffect(t, h, what, req, endpoint, rec, body)
	})
}

// fzStoreSeed is one of FuzzStoreHandler's seed inputs, by its parts.
type fzStoreSeed struct {
	method, endpoint int
	raw, chunked     bool
	store, key       string
	query            string
	ifGen, md, ttl   string
	body             string
}

// fzStoreSeeds is FuzzStoreHandler's seed corpus: every endpoint with its
// valid and invalid flags, headers, keys and bodies.
func fzStoreSeeds() []fzStoreSeed {
	const (
		get, head, put, del, post, patch, options, connect = 0, 1, 2, 3, 4, 5, 6, 7
	)
	item, list, batch, other := fzEndpointItem, fzEndpointList, fzEndpointBatch, fzEndpointOther
	gen := strconv.FormatUint(fzSeedGen, 10)
	return []fzStoreSeed{
		{method: get, endpoint: item, store: fzStore, key: fzKey},
		{method: head, endpoint: item, store: fzStore, key: fzKey},
		{method: get, endpoint: item, store: fzStore, key: "missing"},
		{method: get, endpoint: item, store: "nostore", key: fzKey},
		{method: put, endpoint: item, store: fzStore, key: fzKey, md: "meta", ttl: "60", body: "new"},
		{method: put, endpoint: item, store: "new", key: "a/b c", body: "x"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "add=true", body: "x"},
		{method: put, endpoint: item, store: fzStore, key: "fresh", query: "add=1", body: "x"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "append=true", body: "+"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "prepend=true&background_fetch=true", body: "-"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "add=true&append=true", body: "x"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "add=maybe"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "background_fetch=nope"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, query: "%zz=1;a=b", body: "q"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ifGen: gen, body: "cas"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ifGen: "1", body: "cas"},
		{method: put, endpoint: item, store: fzStore, key: "absent", ifGen: "0", body: "cas"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ifGen: "x"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ifGen: "-1"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ifGen: "18446744073709551616"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ttl: "0"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ttl: "-5"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ttl: "abc"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ttl: "99999999999999999999"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, ttl: "9223372036854775807", body: "forever"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, md: strings.Repeat("m", upstream.MaxMetadataBytes)},
		{method: put, endpoint: item, store: fzStore, key: fzKey, md: strings.Repeat("m", upstream.MaxMetadataBytes+1)},
		{method: put, endpoint: item, store: fzStore, key: fzKey, md: "a\xffb"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, md: " padded\t"},
		{method: put, endpoint: item, store: fzStore, key: fzKey, body: strings.Repeat("b", 1024)},
		{method: put, endpoint: item, store: fzStore, key: fzKey, body: strings.Repeat("b", 1025)},
		{method: put, endpoint: item, store: fzStore, key: fzKey, chunked: true, body: strings.Repeat("b", 1024)},
		{method: put, endpoint: item, store: fzStore, key: fzKey, chunked: true, body: strings.Repeat("b", 1025)},
		{method: put, endpoint: item, store: fzStore, key: fzKey, chunked: true},
		{method: put, endpoint: item, store: fzStore, key: strings.Repeat("k", upstream.MaxKeyBytes), body: "long"},
		{method: put, endpoint: item, store: fzStore, key: strings.Repeat("k", upstream.MaxKeyBytes+1), body: "too long"},
		{method: put, endpoint: item, store: fzStore, key: "."},
		{method: put, endpoint: item, store: fzStore, key: ".."},
		{method: put, endpoint: item, store: fzStore, key: "a/./b"},
		{method: put, endpoint: item, raw: true, store: fzStore, key: "a/./b"},
		{method: get, endpoint: item, raw: true, store: fzStore, key: ".."},
		{method: get, endpoint: item, raw: true, store: fzStore, key: "%2E%2E"},
		{method: put, endpoint: item, raw: true, store: fzStore, key: "%2e/x"},
		{method: put, endpoint: item, store: fzStore, key: ".well-known/acme-challenge/x"},
		{method: put, endpoint: item, store: fzStore, key: "\xff"},
		{method: put, endpoint: item, store: fzStore, key: "\x00"},
		{method: put, endpoint: item, store: fzStore, key: "\x01a", body: "ctl in a key"},
		{method: put, endpoint: item, raw: true, store: fzStore, key: "a//b"},
		{method: get, endpoint: item, raw: true, store: fzStore, key: ""},
		{method: get, endpoint: item, raw: true, store: "", key: fzKey},
		{method: get, endpoint: item, raw: true, store: fzStore, key: "a%2Fb%3F"},
		{method: put, endpoint: item, raw: true, store: "a%2Fb", key: "x%zz"},
		{method: put, endpoint: item, raw: true, store: fzStore, key: "é/ключ", body: "utf-8 path"},
		{method: put, endpoint: item, store: "a/b", key: "k"},
		{method: del, endpoint: item, store: fzStore, key: fzKey},
		{method: del, endpoint: item, store: fzStore, key: fzKey, query: "force=true"},
		{method: del, endpoint: item, store: fzStore, key: "missing"},
		{method: del, endpoint: item, store: fzStore, key: "missing", query: "force=true"},
		{method: del, endpoint: item, store: fzStore, key: fzKey, query: "force=maybe"},
		{method: del, endpoint: item, store: fzStore, key: fzKey, ifGen: gen},
		{method: del, endpoint: item, store: fzStore, key: fzKey, ifGen: "7"},
		{method: del, endpoint: item, store: fzStore, key: fzKey, ifGen: "seven"},
		{method: post, endpoint: item, store: fzStore, key: fzKey},
		{method: patch, endpoint: item, store: fzStore, key: fzKey},
		{method: options, endpoint: item, store: fzStore, key: fzKey},
		{method: connect, endpoint: item, store: fzStore, key: fzKey},
		{method: get, endpoint: list, store: fzStore},
		{method: get, endpoint: list, store: "nostore"},
		{method: get, endpoint: list, store: fzStore, query: "prefix=k&limit=1&consistency=eventual"},
		{method: get, endpoint: list, store: fzStore, query: "consistency=strong&prefix=x"},
		{method: get, endpoint: list, store: fzStore, query: "prefix=a/b"},
		{method: get, endpoint: list, store: fzStore, query: "prefix=%FF"},
		{method: get, endpoint: list, store: fzStore, query: "limit=0"},
		{method: get, endpoint: list, store: fzStore, query: "limit=-1"},
		{method: get, endpoint: list, store: fzStore, query: "limit=99999999999999999999"},
		{method: get, endpoint: list, store: fzStore, query: "limit=abc"},
		{method: get, endpoint: list, store: fzStore, query: "consistency=bogus"},
		{method: get, endpoint: list, store: fzStore, query: "cursor=CgFr"},
		{method: get, endpoint: list, store: fzStore, query: "cursor=CgFrAA=="},
		{method: get, endpoint: list, store: fzStore, query: "cursor=%%%"},
		{method: get, endpoint: list, store: fzStore, query: "cursor=garbage"},
		{method: put, endpoint: list, store: fzStore},
		{method: put, endpoint: batch, store: fzStore, body: `{"key":"k","value":"eA=="}` + "\n" + `{"key":"j","value":"","metadata":"m","time_to_live_sec":5}`},
		{method: put, endpoint: batch, store: fzStore, chunked: true, body: `{"key":"k","value":"eA=="}`},
		{method: put, endpoint: batch, store: fzStore, body: `{"key":"k","value":"eA="}` + "\n\n" + `not json`},
		{method: put, endpoint: batch, store: fzStore, body: strings.Repeat(" ", 4097)},
		{method: put, endpoint: batch, store: fzStore, chunked: true, body: strings.Repeat(" ", 4097)},
		{method: put, endpoint: batch, store: fzStore},
		{method: post, endpoint: batch, store: fzStore},
		{method: get, endpoint: other, store: fzStore, key: fzKey},
		{method: get, endpoint: other, raw: true, store: fzStore, key: "keys"},
	}
}

// fzStoreTarget builds the request target for an endpoint, with store and
// key path-escaped unless raw.
func fzStoreTarget(endpoint int, raw bool, store, key, query string) string {
	escape := url.PathEscape
	if raw {
		escape = func(s string) string { return s }
	}
	target := fzItemPrefix + escape(store)
	switch endpoint {
	case fzEndpointItem:
		target += "/keys/" + escape(key)
	case fzEndpointList:
		target += "/keys"
	case fzEndpointBatch:
		target += "/batch"
	default:
		target += "/" + escape(key)
	}
	if query != "" {
		target += "?" + query
	}
	return target
}

// fzStoreHeader builds the headers the store reads from their fuzzed
// values, as a server hands them on; false when one could not travel.
func fzStoreHeader(ifGen, md, ttl string) (http.Header, bool) {
	header := http.Header{}
	for _, hv := range []struct{ name, value string }{
		{"If-Generation-Match", ifGen}, {"Metadata", md}, {"time_to_live_sec", ttl},
	} {
		if hv.value == "" {
			continue
		}
		if !testutil.FieldValueOK(hv.value) {
			return nil, false
		}
		// A server strips the whitespace around a field value.
		header[hv.name] = []string{strings.Trim(hv.value, " \t")}
	}
	return header, true
}

// fzCheckItemAnswer checks a 200 GET or HEAD of an item: a decimal
// Generation, a Metadata header and a Content-Length that fits the body.
func fzCheckItemAnswer(t *testing.T, what, method string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if _, err := strconv.ParseUint(rec.Header().Get("Generation"), 10, 64); err != nil {
		t.Fatalf("%s: 200 with Generation %q, not a decimal generation", what, rec.Header().Get("Generation"))
	}
	if _, ok := rec.Header()["Metadata"]; !ok {
		t.Fatalf("%s: 200 without a Metadata header", what)
	}
	n, err := strconv.Atoi(rec.Header().Get("Content-Length"))
	switch {
	case err != nil:
		t.Fatalf("%s: 200 with Content-Length %q", what, rec.Header().Get("Content-Length"))
	case method == http.MethodHead && rec.Body.Len() != 0:
		t.Fatalf("%s: HEAD answered a body %q", what, rec.Body)
	case method == http.MethodGet && rec.Body.Len() != n:
		t.Fatalf("%s: Content-Length %d for a body of %d bytes", what, n, rec.Body.Len())
	}
}

// fzCheckListing checks a 200 listing: it parses, and its keys are valid,
// sorted and under the requested prefix.
func fzCheckListing(t *testing.T, what string, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	page, err := upstream.ParseListResponse(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("%s: listing %q does not parse: %v", what, rec.Body, err)
	}
	prefix := req.URL.Query().Get("prefix")
	for i, k := range page.Keys {
		if upstream.CheckKey(k) != nil || !strings.HasPrefix(k, prefix) || (i > 0 && page.Keys[i-1] >= k) {
			t.Fatalf("%s: listing %q: bad, unsorted or off-prefix key %q", what, page.Keys, k)
		}
	}
}

// fzCheckEffect checks what a request did to the store: a written item
// reads back with the body and metadata sent, a deleted one is gone, and a
// request that wrote nothing left the seeded item alone.
func fzCheckEffect(t *testing.T, h http.Handler, what string, req *http.Request, endpoint int, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	method := req.Method
	wrote := (method == http.MethodPut || method == http.MethodDelete) && rec.Code >= 200 && rec.Code < 300
	switch {
	case !wrote:
		fzCheckSeedUnchanged(t, h, what)
	case endpoint == fzEndpointItem && method == http.MethodPut:
		got := fzGet(t, h, req.PathValue("store"), req.PathValue("key"))
		if got.Code != http.StatusOK {
			t.Fatalf("%s wrote %q/%q, but its GET answers %d %s", what, req.PathValue("store"), req.PathValue("key"), got.Code, got.Body)
		}
		if !bytes.Contains(got.Body.Bytes(), body) {
			t.Fatalf("%s wrote %q, but the item reads %q", what, body, got.Body)
		}
		if m := got.Header().Get("Metadata"); m != req.Header.Get("Metadata") {
			t.Fatalf("%s sent metadata %q, but the item has %q", what, req.Header.Get("Metadata"), m)
		}
		if g, err := strconv.ParseUint(got.Header().Get("Generation"), 10, 64); err != nil || g <= fzSeedGen {
			t.Fatalf("%s: the written item's generation %q is not above the seeded %d", what, got.Header().Get("Generation"), fzSeedGen)
		}
	case endpoint == fzEndpointItem && method == http.MethodDelete:
		if got := fzGet(t, h, req.PathValue("store"), req.PathValue("key")); got.Code != http.StatusNotFound {
			t.Fatalf("%s deleted %q/%q, but its GET answers %d", what, req.PathValue("store"), req.PathValue("key"), got.Code)
		}
	}
}

// fzBatchOptions: values of at most 64 bytes, so that the value limit is
// reachable, and batch bodies of at most 96 KiB, above the longest line
// (88 bytes of base64 and 64 KiB of slack), so that both a too-long line and
// a too-large body are.
var fzBatchOptions = localstore.Config{
	MaxValueBytes: 64,
	MaxBatchBytes: 96 << 10,
	Now:           func() time.Time { return fzNow },
	Logger:        slog.New(slog.DiscardHandler),
}

// fzMaxBatchLine is the store's longest line under fzBatchOptions.
var fzMaxBatchLine = base64.StdEncoding.EncodedLen(int(fzBatchOptions.MaxValueBytes)) + 64<<10

// fzBatchLine is one counted line of a batch body as the documented format
// (batch.go) reads it.
type fzBatchLine struct {
	key      string // "" when the line has no string key
	valid    bool
	value    []byte
	metadata string
}

// fzParseBatchBody splits body into the lines the store counts (non-blank
// ones, and ones too long to be read) and judges each against the format
// batch.go documents.
func fzParseBatchBody(body []byte) []fzBatchLine {
	var lines []fzBatchLine
	for raw := range bytes.SplitSeq(body, []byte("\n")) {
		trimmed := bytes.Trim(raw, " \t\r")
		if len(raw) > fzMaxBatchLine {
			lines = append(lines, fzBatchLine{})
			continue
		}
		if len(trimmed) == 0 {
			continue
		}
		lines = append(lines, fzJudgeBatchLine(trimmed))
	}
	return lines
}

func fzJudgeBatchLine(line []byte) fzBatchLine {
	var l fzBatchLine
	var fields map[string]json.RawMessage
	if !utf8.Valid(line) || line[0] != '{' || json.Unmarshal(line, &fields) != nil {
		return l
	}
	var (
		key, value, metadata *string
		ttl                  *int64
		bg                   *bool
	)
	for name, dst := range map[string]any{"key": &key, "value": &value, "metadata": &metadata, "time_to_live_sec": &ttl, "background_fetch": &bg} {
		if raw, ok := fields[name]; ok && json.Unmarshal(raw, dst) != nil {
			return l // a known field of the wrong type: no key reported
		}
	}
	if key == nil {
		return l
	}
	l.key = *key
	if upstream.CheckKey(*key) != nil || value == nil || strings.ContainsAny(*value, "\r\n") {
		return l
	}
	v, err := base64.StdEncoding.Strict().DecodeString(*value)
	if err != nil || int64(len(v)) > fzBatchOptions.MaxValueBytes {
		return l
	}
	if metadata != nil && upstream.CheckMetadata(*metadata) != nil {
		return l
	}
	if ttl != nil && *ttl <= 0 {
		return l
	}
	l.valid, l.value = true, v
	if metadata != nil {
		l.metadata = *metadata
	}
	return l
}

// fzListAll pages through a store's listing; nil when the store does not
// exist.
func fzListAll(t *testing.T, h http.Handler, store string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for {
		target := fzItemPrefix + url.PathEscape(store) + "/keys"
		if cursor != "" {
			target += "?cursor=" + url.QueryEscape(cursor)
		}
		req, _ := fzRequest(http.MethodGet, target, nil, nil, false)
		rec := fzServe(t, h, req)
		if rec.Code == http.StatusNotFound && cursor == "" {
			return nil
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("listing %s: %d %s", target, rec.Code, rec.Body)
		}
		page, err := upstream.ParseListResponse(bytes.NewReader(rec.Body.Bytes()))
		if err != nil {
			t.Fatalf("listing %s: %v", target, err)
		}
		keys = append(keys, page.Keys...)
		if page.NextCursor == "" {
			return keys
		}
		cursor = page.NextCursor
	}
}

// FuzzBatchEndpoint sends an arbitrary body to the batch endpoint of an
// empty store and checks the answer against the documented line format: a
// body over the limit is a 413; otherwise a 200 exactly when every counted
// line is valid, after which the store holds exactly the lines' keys, each
// with its last line's value and metadata; or a 400 whose errors, sorted,
// name exactly the bad lines (by their index among the counted lines) and
// nothing written. The 400 also reads through upstream.ParseBatchResponse.
func FuzzBatchEndpoint(f *testing.F) {
	for _, s := range fzBatchSeeds() {
		f.Add([]byte(s), false)
		if len(s) < 100 {
			f.Add([]byte(s), true)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, chunked bool) {
		const store = "b"
		st, err := localstore.Open(fzBatchOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		h := st.Handler()
		req, _ := fzRequest(http.MethodPut, fzItemPrefix+store+"/batch", http.Header{"Content-Type": {"application/x-ndjson"}}, body, chunked)
		rec := fzServe(t, h, req)

		if int64(len(body)) > fzBatchOptions.MaxBatchBytes {
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("a %d-byte body: %d %s, want 413", len(body), rec.Code, rec.Body)
			}
			if keys := fzListAll(t, h, store); keys != nil {
				t.Fatalf("a refused batch wrote %q", keys)
			}
			return
		}
		lines := fzParseBatchBody(body)
		var bad []int
		for i, l := range lines {
			if !l.valid {
				bad = append(bad, i)
			}
		}
		switch rec.Code {
		case http.StatusOK:
			if len(bad) > 0 {
				t.Fatalf("the store accepted a batch whose lines %v break the documented format", bad)
			}
			fzCheckBatchApplied(t, h, store, rec, lines)
		case http.StatusBadRequest:
			fzCheckBatchRefused(t, h, store, rec, lines, bad, body)
		default:
			t.Fatalf("batch answered %d %s, want 200 or 400", rec.Code, rec.Body)
		}
	})
}

// fzBatchSeeds is FuzzBatchEndpoint's seed corpus: valid lines, every
// kind of bad field, and bodies at the line and body limits.
func fzBatchSeeds() []string {
	return []string{
		``, "\n", " \t\r\n\n", `{"key":"k","value":"eA=="}`,
		`{"key":"k","value":"eA=="}` + "\n",
		`{"key":"k","value":"eA==","metadata":"m","time_to_live_sec":60,"background_fetch":true}` + "\r\n    " + `{"key":"j","value":""}`,
		`{"key":"k","value":"eA=="}` + "\n" + `{"key":"k","value":"eQ==","metadata":"second"}`,
		`{"key":"k","value":"eA==","metadata":null,"time_to_live_sec":null,"background_fetch":null}`,
		`{"key":"k","value":"eA==","extra":[1,2,{}]}`,
		`{"KEY":"k","value":"eA=="}`, `{"key":"k","VALUE":"eA=="}`,
		`{"key":"k","value":"eA"}`, `{"key":"k","value":"eA=\n="}`, `{"key":"k","value":"eB=="}`, `{"key":"k","value":"-_8="}`,
		`{"key":"k","value":"` + base64.StdEncoding.EncodeToString(make([]byte, 64)) + `"}`,
		`{"key":"k","value":"` + base64.StdEncoding.EncodeToString(make([]byte, 65)) + `"}`,
		`{"key":"k"}`, `{"value":""}`, `{"key":1,"value":""}`, `{"key":"k","value":1}`,
		`{"key":"k","value":"","metadata":1}`, `{"key":"k","value":"","metadata":"a\r\nb"}`,
		`{"key":"k","value":"","metadata":"` + strings.Repeat("m", upstream.MaxMetadataBytes+1) + `"}`,
		`{"key":"k","value":"","time_to_live_sec":0}`, `{"key":"k","value":"","time_to_live_sec":-1}`,
		`{"key":"k","value":"","time_to_live_sec":1.5}`, `{"key":"k","value":"","time_to_live_sec":"60"}`,
		`{"key":"k","value":"","time_to_live_sec":9223372036854775807}`,
		`{"key":"k","value":"","background_fetch":"yes"}`,
		`{"key":".","value":""}`, `{"key":"a/./b","value":""}`, `{"key":".well-known/acme-challenge/x","value":""}`,
		`{"key":"a?b","value":""}`, `{"key":"","value":""}`, `{"key":"\ud800","value":""}`,
		`{"key":"` + strings.Repeat("k", upstream.MaxKeyBytes+1) + `","value":""}`,
		"{\"key\":\"\xff\",\"value\":\"\"}", `{"key":"k","value":""}` + "\v",
		`[]`, `null`, `"k"`, `{`, `{"key":"k","value":""}{"key":"j","value":""}`, `{"key":"k","key":"j","value":""}`,
		"ok\n" + `{"key":"k","value":""}` + "\n\n  \nbad",
		`{"key":"k","value":""}` + "\n" + strings.Repeat("x", fzMaxBatchLine+1) + "\n" + `{"key":"j"}`,
		strings.Repeat("x", fzMaxBatchLine),
		strings.Repeat("\n", int(fzBatchOptions.MaxBatchBytes)+1),
		// Regression: metadata with a control character other than HTAB
		// was accepted, and the item's GET then sent an invalid Metadata
		// header (fix: CheckMetadata refuses it).
		`{"key":"k","value":"","metadata":"\u0001"}`,
		`{"key":"k","value":"","metadata":"a\u007fb"}`,
	}
}

// fzCheckBatchApplied checks a 200 batch answer: Fastly's success body, and
// a store holding exactly the lines' keys, each with its last line's value
// and metadata.
func fzCheckBatchApplied(t *testing.T, h http.Handler, store string, rec *httptest.ResponseRecorder, lines []fzBatchLine) {
	t.Helper()
	if rec.Body.String() != fzBatchSuccess {
		t.Fatalf("200 with body %q, want %q", rec.Body, fzBatchSuccess)
	}
	want := map[string]fzBatchLine{}
	for _, l := range lines {
		want[l.key] = l // a later line for a key wins
	}
	keys := fzListAll(t, h, store)
	if wantKeys := slices.Sorted(maps.Keys(want)); !slices.Equal(keys, wantKeys) {
		t.Fatalf("after the batch the store lists %q, want %q", keys, wantKeys)
	}
	for k, l := range want {
		got := fzGet(t, h, store, k)
		if got.Code != http.StatusOK || !bytes.Equal(got.Body.Bytes(), l.value) || got.Header().Get("Metadata") != l.metadata {
			t.Fatalf("key %q reads %d %q metadata %q, want %q metadata %q", k, got.Code, got.Body, got.Header().Get("Metadata"), l.value, l.metadata)
		}
	}
}

// fzCheckBatchRefused checks a 400 batch answer: a batch response whose
// line errors, in order, name exactly the bad lines, and nothing written.
func fzCheckBatchRefused(t *testing.T, h http.Handler, store string, rec *httptest.ResponseRecorder, lines []fzBatchLine, bad []int, body []byte) {
	t.Helper()
	res, err := upstream.ParseBatchResponse(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("400 body %q does not parse as a batch response: %v", rec.Body, err)
	}
	if len(res.LineErrors) == 0 {
		t.Fatalf("400 without line errors: %s", rec.Body)
	}
	var got []int
	for i, le := range res.LineErrors {
		if le.Index < 0 || le.Index >= len(lines) || (i > 0 && le.Index <= res.LineErrors[i-1].Index) {
			t.Fatalf("line errors %+v: index %d out of order or outside the %d counted lines", res.LineErrors, le.Index, len(lines))
		}
		if le.Code != "400" || le.Reason == "" {
			t.Fatalf("line error %+v: want code 400 and a reason", le)
		}
		if le.Key != "" && le.Key != lines[le.Index].key {
			t.Fatalf("line error %+v names key %q; line %d's key is %q", le, le.Key, le.Index, lines[le.Index].key)
		}
		got = append(got, le.Index)
	}
	if !slices.Equal(got, bad) {
		t.Fatalf("the store refused lines %v, the documented format refuses %v (body %q)", got, bad, body)
	}
	if keys := fzListAll(t, h, store); keys != nil {
		t.Fatalf("a refused batch wrote %q", keys)
	}
}
