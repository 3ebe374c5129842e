package localstore_test

// These tests replay the requests of Fastly's recorded KV Store traffic
// (go-vcr v1 cassettes recorded by fastly/go-fastly, read in place from the
// shared fixtures folder) against the local store over real HTTP, and
// compare its answers with Fastly's: statuses, the headers clients depend
// on and the bodies. Generations and dates necessarily differ and are
// checked for form only.

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/cassette"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream/localstore"
)

const (
	// recordedStore is the store id in every current recording.
	recordedStore = "iaa48y0oxw13s12xpfdkk9"
	// fastlyBase is the origin the recordings were made against; it is
	// swapped for the test server's.
	fastlyBase = "https://api.fastly.com"
)

// startLocalStore serves a fresh in-memory store over real HTTP.
func startLocalStore(t *testing.T) *httptest.Server {
	t.Helper()
	return startLocalStoreWith(t, localstore.Config{})
}

func startLocalStoreWith(t *testing.T, cfg localstore.Config) *httptest.Server {
	t.Helper()
	store, err := localstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	// Cleanups run last-in first-out: the server stops before the store closes.
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(srv.Close)
	return srv
}

// genPair is a key's generation as last read from Fastly (recorded) and
// from the local store, taken from GETs of the same step.
type genPair struct{ recorded, local uint64 }

// replayer sends recorded requests to the local store.
type replayer struct {
	srv *httptest.Server
	// lastRead maps a key to its generations at the last GET, to translate
	// recorded if-generation-match values into local ones.
	lastRead map[string]genPair
	// storeID, when set, replaces the recorded store id in every path: the
	// id of the store the local one created.
	storeID string
}

func newReplayer(srv *httptest.Server) *replayer {
	return &replayer{srv: srv, lastRead: make(map[string]genPair)}
}

// localResponse is the local store's answer, read in full.
type localResponse struct {
	status        string
	code          int
	header        http.Header
	contentLength int64
	body          string
}

// itemKey returns the unescaped key of an item URL, or "" for a listing.
func itemKey(t *testing.T, u *url.URL) string {
	t.Helper()
	_, escaped, ok := strings.Cut(u.EscapedPath(), "/keys/")
	if !ok {
		return ""
	}
	key, err := url.PathUnescape(escaped)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// do sends one request to the local store and reads the answer.
func (r *replayer) do(t *testing.T, method, target string, header http.Header, body string) localResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return localResponse{
		status:        resp.Status,
		code:          resp.StatusCode,
		header:        resp.Header,
		contentLength: resp.ContentLength,
		body:          string(b),
	}
}

// replay sends a recorded request to the local store: same method, escaped
// path, raw query, headers and body, with the origin swapped for the test
// server's. A recorded If-Generation-Match is a Fastly generation, which
// means nothing locally; it is translated by keeping its distance from the
// generation last read for the key. The recordings send the last read
// value + 1, so the local request also carries a generation that does not
// match, and must also fail with 412.
func (r *replayer) replay(t *testing.T, in cassette.Request) localResponse {
	t.Helper()
	rest, ok := strings.CutPrefix(in.URL, fastlyBase)
	if !ok {
		t.Fatalf("recorded URL %q is not under %s", in.URL, fastlyBase)
	}
	u, err := in.ParsedURL()
	if err != nil {
		t.Fatal(err)
	}
	header := in.Headers.Clone()
	if header == nil {
		header = http.Header{}
	}
	if v := header.Get("If-Generation-Match"); v != "" {
		recorded, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		key := itemKey(t, u)
		last, ok := r.lastRead[key]
		if !ok {
			t.Fatalf("If-Generation-Match on %q, which no earlier step read", key)
		}
		delta := int64(recorded - last.recorded)
		local := uint64(int64(last.local) + delta)
		t.Logf("If-Generation-Match %d = recorded read %d %+d; sent as %d", recorded, last.recorded, delta, local)
		header.Set("If-Generation-Match", strconv.FormatUint(local, 10))
	}
	if r.storeID != "" {
		rest = strings.Replace(rest, "/resources/stores/kv/"+recordedStore, "/resources/stores/kv/"+r.storeID, 1)
	}
	return r.do(t, in.Method, r.srv.URL+rest, header, in.Body)
}

// noteRead records the generations a GET returned, and checks that the
// local store's generation changed exactly when Fastly's did, and upward:
// the recordings show an unchanged generation across reads with no
// successful write between them, and a larger one after a write.
func (r *replayer) noteRead(t *testing.T, key string, rec cassette.Response, got localResponse) {
	t.Helper()
	if rec.Code != http.StatusOK || got.code != http.StatusOK {
		return
	}
	recorded, err1 := strconv.ParseUint(rec.Headers.Get("Generation"), 10, 64)
	local, err2 := strconv.ParseUint(got.header.Get("Generation"), 10, 64)
	if err1 != nil || err2 != nil {
		return // compareResponse reports a missing or malformed Generation
	}
	if prev, ok := r.lastRead[key]; ok {
		switch {
		case recorded == prev.recorded && local != prev.local:
			t.Errorf("generation of %q changed from %d to %d; Fastly's stayed %d", key, prev.local, local, recorded)
		case recorded > prev.recorded && local <= prev.local:
			t.Errorf("generation of %q went from %d to %d; Fastly's rose from %d to %d", key, prev.local, local, prev.recorded, recorded)
		}
	}
	r.lastRead[key] = genPair{recorded: recorded, local: local}
}

// compareResponse compares the local store's answer with Fastly's.
func compareResponse(t *testing.T, rec cassette.Response, got localResponse) {
	t.Helper()
	if got.code != rec.Code {
		t.Fatalf("status %q (body %q), recorded %q", got.status, got.body, rec.Status)
	}
	if got.status != rec.Status {
		t.Errorf("status line %q, recorded %q", got.status, rec.Status)
	}

	// Headers whose values must be identical, present or absent alike.
	// Metadata must be present even when empty: clients read
	// `Metadata: ""` as "no metadata". Content-Type is absent on 412 and on
	// writes.
	for _, name := range []string{"Content-Type", "Metadata", "Stored-Content-Length"} {
		want, inRec := rec.Headers[name]
		have, inLocal := got.header[name]
		if inRec != inLocal || !slices.Equal(have, want) {
			t.Errorf("header %s = %q (present %t), recorded %q (present %t)", name, have, inLocal, want, inRec)
		}
	}
	// Older recordings lack it; where Fastly sent it, so must the store.
	if want, ok := rec.Headers["Cache-Control"]; ok && !slices.Equal(got.header["Cache-Control"], want) {
		t.Errorf("Cache-Control = %q, recorded %q", got.header["Cache-Control"], want)
	}
	// Generation differs by nature: it must be there when Fastly sent one
	// (GET), absent when it did not (writes return none), and a canonical
	// decimal uint64 as go-fastly parses it.
	_, recGen := rec.Headers["Generation"]
	if gen, ok := got.header["Generation"]; ok != recGen {
		t.Errorf("Generation present %t, recorded %t", ok, recGen)
	} else if ok {
		g, err := strconv.ParseUint(strings.Join(gen, ","), 10, 64)
		if err != nil || strconv.FormatUint(g, 10) != gen[0] {
			t.Errorf("Generation %q is not a decimal uint64", gen)
		}
	}
	// Last-Modified differs by date; it must be there and parse.
	_, recLM := rec.Headers["Last-Modified"]
	if lm, ok := got.header["Last-Modified"]; ok != recLM {
		t.Errorf("Last-Modified present %t, recorded %t", ok, recLM)
	} else if ok {
		if _, err := http.ParseTime(strings.Join(lm, ",")); err != nil {
			t.Errorf("Last-Modified %q does not parse: %v", lm, err)
		}
	}
	// Fastly frames GETs, PUTs and 412s with a Content-Length (0 on writes
	// and failures) and lists with chunking; compare where it recorded one.
	if cl := rec.Headers.Get("Content-Length"); cl != "" {
		want, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got.contentLength != want {
			t.Errorf("Content-Length %d, recorded %d", got.contentLength, want)
		}
	}

	if rec.Headers.Get("Content-Type") == "application/json" {
		compareListing(t, rec.Body, got.body)
	} else if got.body != rec.Body {
		t.Errorf("body %q, recorded %q", got.body, rec.Body)
	}
}

// compareListing compares list bodies by shape: the same top-level fields,
// the same keys in the same order, and the same meta object (limit as a
// number, next_cursor only when more follow and equal to Fastly's, prefix
// echoed, consistency echoed only for eventual).
func compareListing(t *testing.T, recBody, gotBody string) {
	t.Helper()
	type listing struct {
		Data []string       `json:"data"`
		Meta map[string]any `json:"meta"`
	}
	var fields [2]map[string]json.RawMessage
	var bodies [2]listing
	for i, b := range []string{recBody, gotBody} {
		if err := json.Unmarshal([]byte(b), &fields[i]); err != nil {
			t.Fatalf("listing %q: %v", b, err)
		}
		if err := json.Unmarshal([]byte(b), &bodies[i]); err != nil {
			t.Fatalf("listing %q: %v", b, err)
		}
	}
	want, got := bodies[0], bodies[1]
	if w, g := slices.Sorted(maps.Keys(fields[0])), slices.Sorted(maps.Keys(fields[1])); !slices.Equal(w, g) {
		t.Errorf("listing fields %q, recorded %q", g, w)
	}
	if !slices.Equal(got.Data, want.Data) {
		t.Errorf("data %q, recorded %q", got.Data, want.Data)
	}
	if !reflect.DeepEqual(got.Meta, want.Meta) {
		t.Errorf("meta %v, recorded %v", got.Meta, want.Meta)
	}
}

// sequence is the order in which go-fastly's TestClient_KVStore made the
// recordings; each step depends on the state the earlier ones left.
var sequence = []string{
	"create-keys",
	"check-keys",
	"batch-create-keys",
	"list-keys",
	"list-keys-pagination",
	"list-keys-prefix",
	"get-item-round-1",
	"insert-item-add-failure",
	"insert-item-prepend-set-metadata",
	"get-item-round-2",
	"insert-item-generation-match-failure",
	"insert-item-append",
	"get-item-round-3",
	"delete-item-nonexistent-suppress-error",
	"delete-item-generation-match-failure",
	"cleanup",
}

// TestLocalStoreFidelity replays the whole recorded session, in order,
// against one local store.
func TestLocalStoreFidelity(t *testing.T) {
	t.Parallel()
	rp := newReplayer(startLocalStore(t))
	replaySequence(t, rp)
}

// replaySequence replays the item steps of the recorded session, in order.
func replaySequence(t *testing.T, rp *replayer) {
	t.Helper()
	for _, name := range sequence {
		ok := t.Run(name, func(t *testing.T) {
			rec := kvtest.LoadRecording(t, name)
			if name == "batch-create-keys" {
				// The batch is not under .../keys, so ItemInteractions
				// leaves it out; it is replayed on its own. It writes
				// batch-1 and batch-2, which the listings that follow hold.
				replayBatch(t, rp, rec)
				return
			}
			interactions := kvtest.ItemInteractions(t, rec, recordedStore)
			if len(interactions) == 0 {
				t.Fatal("recording has no item interactions")
			}
			for i, in := range interactions {
				u, err := in.Request.ParsedURL()
				if err != nil {
					t.Fatal(err)
				}
				key := itemKey(t, u)
				// Name steps by key, or by query for listings.
				label := key
				if label == "" {
					label = "?" + u.RawQuery
				}
				t.Run(strconv.Itoa(i)+" "+in.Request.Method+" "+label, func(t *testing.T) {
					got := rp.replay(t, in.Request)
					compareResponse(t, in.Response, got)
					if in.Request.Method == http.MethodGet && key != "" {
						rp.noteRead(t, key, in.Response, got)
						rp.checkHead(t, in.Request, in.Response, got)
					}
				})
			}
		})
		if !ok {
			// Later steps assume this one's effects; their failures would
			// only echo this one.
			t.Fatalf("step %s failed; stopping the sequence", name)
		}
	}
}

// replayBatch replays the recorded batch request (NDJSON whose second line
// is indented by four spaces) against the batch endpoint and compares the
// answer: the status and the body exactly, and the headers as for every
// other step.
func replayBatch(t *testing.T, rp *replayer, rec *cassette.Cassette) {
	t.Helper()
	if len(rec.Interactions) != 1 {
		t.Fatalf("batch recording has %d interactions, want 1", len(rec.Interactions))
	}
	in := rec.Interactions[0]
	u, err := in.Request.ParsedURL()
	if err != nil {
		t.Fatal(err)
	}
	if want := "/resources/stores/kv/" + recordedStore + "/batch"; in.Request.Method != http.MethodPut || u.EscapedPath() != want {
		t.Fatalf("recorded %s %s, want PUT %s", in.Request.Method, u.EscapedPath(), want)
	}
	got := rp.replay(t, in.Request)
	if got.code != in.Response.Code || got.status != in.Response.Status {
		t.Fatalf("status %q (body %q), recorded %q", got.status, got.body, in.Response.Status)
	}
	if got.body != in.Response.Body {
		t.Errorf("body %q, recorded %q", got.body, in.Response.Body)
	}
	compareResponse(t, in.Response, got)
}

// TestLocalStorePaddedCursor replays the one recording of a cursor with
// base64 padding ("dragonfruit" is 11 bytes, so the encoded cursor ends in
// "=="), sent back URL-encoded as %3D%3D. It dates from 2023, when the
// store family was /resources/stores/object/ and go-fastly sent no
// consistency parameter; the path is moved to the kv family and the query
// is sent as recorded.
func TestLocalStorePaddedCursor(t *testing.T) {
	t.Parallel()
	rec := kvtest.LoadRecording(t, "history/2023-04-object_store_558e0b14/list-keys-pagination")
	rp := newReplayer(startLocalStore(t))

	// The store held the keys the recording lists across its pages.
	for _, in := range rec.Interactions {
		var page struct {
			Data []string `json:"data"`
		}
		if err := json.Unmarshal([]byte(in.Response.Body), &page); err != nil {
			t.Fatal(err)
		}
		for _, key := range page.Data {
			target := rp.srv.URL + "/resources/stores/kv/" + recordedStore + "/keys/" + url.PathEscape(key)
			if got := rp.do(t, http.MethodPut, target, nil, key); got.code != http.StatusOK {
				t.Fatalf("seeding %q: status %q", key, got.status)
			}
		}
	}

	for i, in := range rec.Interactions {
		u, err := in.Request.ParsedURL()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.EscapedPath(), "/resources/stores/object/") {
			t.Fatalf("unexpected recorded path %q", u.EscapedPath())
		}
		target := rp.srv.URL + "/resources/stores/kv/" + recordedStore + "/keys?" + u.RawQuery
		got := rp.do(t, in.Request.Method, target, in.Request.Headers, in.Request.Body)
		t.Run("page "+strconv.Itoa(i+1), func(t *testing.T) {
			compareResponse(t, in.Response, got)
		})
	}
}
