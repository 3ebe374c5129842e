package upstream_test

// These tests replay Fastly's recorded KV Store traffic (go-vcr v1 cassettes
// recorded by fastly/go-fastly, kept in the shared fixtures folder) against
// upstream.Client: a test server answers with the recorded responses in
// order, and each test checks that the client sent what go-fastly sent and
// understood what Fastly answered.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kvgate/kvgate/internal/cassette"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
)

const (
	// recordedStore is the store id in every current recording.
	recordedStore = "iaa48y0oxw13s12xpfdkk9"
	testToken     = "test-token"
)

// capturedRequest is what the client put on the wire, as the server saw it.
type capturedRequest struct {
	method string
	// path and query are split from the request line, so they are exactly
	// the bytes the client sent, escapes included.
	path, query   string
	header        http.Header
	body          string
	contentLength int64
}

// replayServer answers the n-th request with the n-th recorded response,
// whatever the request, and keeps the requests for the test to compare:
// go-vcr's own replay matches on method and URL, which would hide a client
// that sends the wrong URL behind a "no match" error.
type replayServer struct {
	*httptest.Server
	t            *testing.T
	interactions []cassette.Interaction

	mu       sync.Mutex
	captured []capturedRequest
}

func newReplayServer(t *testing.T, interactions []cassette.Interaction) *replayServer {
	t.Helper()
	s := &replayServer{t: t, interactions: interactions}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *replayServer) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.t.Errorf("replay server: reading request body: %v", err)
	}
	path, query, _ := strings.Cut(r.RequestURI, "?")
	s.mu.Lock()
	n := len(s.captured)
	s.captured = append(s.captured, capturedRequest{
		method:        r.Method,
		path:          path,
		query:         query,
		header:        r.Header.Clone(),
		body:          string(body),
		contentLength: r.ContentLength,
	})
	s.mu.Unlock()
	if n >= len(s.interactions) {
		s.t.Errorf("replay server: request %d (%s %s) beyond the %d recorded", n+1, r.Method, r.RequestURI, len(s.interactions))
		http.Error(w, "no recorded response left", http.StatusInternalServerError)
		return
	}
	rec := s.interactions[n].Response
	// Every recorded header goes back as recorded, Content-Length included,
	// so the client sees Fastly's framing (and Metadata: "" stays present).
	maps.Copy(w.Header(), rec.Headers.Clone())
	w.WriteHeader(rec.Code)
	_, _ = io.WriteString(w, rec.Body)
}

func (s *replayServer) requests() []capturedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.captured)
}

func newFidelityClient(t *testing.T, baseURL string) *upstream.Client {
	t.Helper()
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: baseURL, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unrecordedHeaders are request headers a cassette cannot be compared on:
// go-vcr records req.Header only (not Content-Length or Host), the recorder
// deletes Fastly-Key, Accept-Encoding is added by the transport below the
// recorder, and User-Agent names the client product.
var unrecordedHeaders = []string{"Accept-Encoding", "Content-Length", "Fastly-Key", "Host", "User-Agent"}

// checkRequest compares a request the client sent with the recorded one.
func checkRequest(t *testing.T, want cassette.Request, got capturedRequest) {
	t.Helper()
	u, err := want.ParsedURL()
	if err != nil {
		t.Fatal(err)
	}
	if got.method != want.Method {
		t.Errorf("method = %s, recorded %s", got.method, want.Method)
	}
	if got.path != u.EscapedPath() {
		t.Errorf("path = %q, recorded %q", got.path, u.EscapedPath())
	}
	// Exact string: go-fastly encodes with url.Values.Encode (sorted keys),
	// and so must the client.
	if got.query != u.RawQuery {
		t.Errorf("query = %q, recorded %q", got.query, u.RawQuery)
	}
	if got.body != want.Body {
		t.Errorf("body = %q, recorded %q", got.body, want.Body)
	}
	// go-fastly sends a known length; so must the client (a chunked PUT is
	// untested against Fastly).
	if got.contentLength != int64(len(want.Body)) {
		t.Errorf("Content-Length = %d, want %d", got.contentLength, len(want.Body))
	}
	if key := got.header.Values("Fastly-Key"); !slices.Equal(key, []string{testToken}) {
		t.Errorf("Fastly-Key = %q, want [%q]", key, testToken)
	}
	gotH, wantH := got.header.Clone(), want.Headers.Clone()
	if wantH == nil {
		wantH = http.Header{}
	}
	for _, name := range unrecordedHeaders {
		gotH.Del(name)
		wantH.Del(name)
	}
	// A known, documented difference: go-fastly sends no Content-Type on a
	// single-item PUT, kvgate sends application/octet-stream as Fastly's
	// generated SDK and compute-js-static-publish do; Fastly accepts both
	// (reference §2.3). Anything else must match.
	if got.method == http.MethodPut && wantH.Get("Content-Type") == "" {
		if ct := gotH.Values("Content-Type"); !slices.Equal(ct, []string{"application/octet-stream"}) {
			t.Errorf("PUT Content-Type = %q, want [application/octet-stream]", ct)
		}
		gotH.Del("Content-Type")
	}
	// Both directions: a missing If-Generation-Match loses a condition, and
	// a stray Metadata on append would overwrite metadata.
	for name := range wantH {
		if !slices.Equal(gotH[name], wantH[name]) {
			t.Errorf("header %s = %q, recorded %q", name, gotH[name], wantH[name])
		}
	}
	for name := range gotH {
		if _, ok := wantH[name]; !ok {
			t.Errorf("header %s = %q sent, not in the recording", name, gotH[name])
		}
	}
}

// replayCall is one client call and the check of its result against the
// recorded response it receives.
type replayCall struct {
	name string
	run  func(ctx context.Context, t *testing.T, c *upstream.Client, rec cassette.Response)
}

// checkOutcome checks a write's error against the recorded status: nil for
// a 2xx, else a *StatusError with the recorded status and the precondition
// the request carried.
func checkOutcome(t *testing.T, err error, rec cassette.Response, op upstream.Op, cond upstream.Precondition) {
	t.Helper()
	if rec.Code >= 200 && rec.Code < 300 {
		if err != nil {
			t.Errorf("recorded %d, got error %v", rec.Code, err)
		}
		return
	}
	se, ok := errors.AsType[*upstream.StatusError](err)
	if !ok {
		t.Fatalf("recorded %d, got %T %v; want *upstream.StatusError", rec.Code, err, err)
	}
	if se.Status != rec.Code || se.Op != op || se.Precondition != cond {
		t.Errorf("StatusError{Op: %q, Status: %d, Precondition: %d}, want {%q, %d, %d}",
			se.Op, se.Status, se.Precondition, op, rec.Code, cond)
	}
	// Fastly's 412s have empty bodies and no rate-limit headers.
	if se.Body != strings.TrimSpace(rec.Body) || se.RetryAfter != 0 {
		t.Errorf("StatusError body %q retry %v, want %q and 0", se.Body, se.RetryAfter, rec.Body)
	}
}

// putCall calls PutItem; cond is what a recorded 412 must be attributed to.
func putCall(key, value string, opts upstream.PutOptions, cond upstream.Precondition) replayCall {
	return replayCall{name: "PUT " + key, run: func(ctx context.Context, t *testing.T, c *upstream.Client, rec cassette.Response) {
		checkOutcome(t, c.PutItem(ctx, recordedStore, key, []byte(value), opts), rec, upstream.OpPut, cond)
	}}
}

// deleteCall calls DeleteItem; cond is what a recorded 412 must be attributed to.
func deleteCall(key string, opts upstream.DeleteOptions, cond upstream.Precondition) replayCall {
	return replayCall{name: "DELETE " + key, run: func(ctx context.Context, t *testing.T, c *upstream.Client, rec cassette.Response) {
		checkOutcome(t, c.DeleteItem(ctx, recordedStore, key, opts), rec, upstream.OpDelete, cond)
	}}
}

// getCall calls GetItem and checks every field against the recorded response.
func getCall(key string) replayCall {
	return replayCall{name: "GET " + key, run: func(ctx context.Context, t *testing.T, c *upstream.Client, rec cassette.Response) {
		item, err := c.GetItem(ctx, recordedStore, key)
		if err != nil {
			t.Fatalf("GetItem: %v", err)
		}
		// The recorded headers must be there, or a zero would match a zero.
		for _, h := range []string{"Generation", "Metadata", "Last-Modified"} {
			if _, ok := rec.Headers[h]; !ok {
				t.Fatalf("recording lacks %s", h)
			}
		}
		wantGen, err := strconv.ParseUint(rec.Headers.Get("Generation"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		wantLM, err := http.ParseTime(rec.Headers.Get("Last-Modified"))
		if err != nil {
			t.Fatal(err)
		}
		if string(item.Value) != rec.Body {
			t.Errorf("Value = %q, recorded %q", item.Value, rec.Body)
		}
		if item.Metadata != rec.Headers.Get("Metadata") {
			t.Errorf("Metadata = %q, recorded %q", item.Metadata, rec.Headers.Get("Metadata"))
		}
		if item.Generation != wantGen {
			t.Errorf("Generation = %d, recorded %d", item.Generation, wantGen)
		}
		if !item.LastModified.Equal(wantLM) {
			t.Errorf("LastModified = %v, recorded %v", item.LastModified, wantLM)
		}
	}}
}

// listCall calls ListKeys and checks the page against the recorded body.
func listCall(opts upstream.ListOptions) replayCall {
	return replayCall{name: "LIST", run: func(ctx context.Context, t *testing.T, c *upstream.Client, rec cassette.Response) {
		page, err := c.ListKeys(ctx, recordedStore, opts)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		var body struct {
			Data []string       `json:"data"`
			Meta map[string]any `json:"meta"`
		}
		if err := json.Unmarshal([]byte(rec.Body), &body); err != nil {
			t.Fatalf("recorded body: %v", err)
		}
		wantCursor, _ := body.Meta["next_cursor"].(string)
		if !slices.Equal(page.Keys, body.Data) {
			t.Errorf("Keys = %q, recorded %q", page.Keys, body.Data)
		}
		if page.NextCursor != wantCursor {
			t.Errorf("NextCursor = %q, recorded %q", page.NextCursor, wantCursor)
		}
	}}
}

// clientRecordings are the current recordings of item calls, each with the
// client calls that go-fastly's TestClient_KVStore made to produce it.
var clientRecordings = []struct {
	name  string
	calls []replayCall
}{
	{"create-keys", []replayCall{
		putCall("apple", "apple0", upstream.PutOptions{}, upstream.PreconditionNone),
		putCall("banana", "banana1", upstream.PutOptions{}, upstream.PreconditionNone),
		putCall("carrot", "carrot2", upstream.PutOptions{}, upstream.PreconditionNone),
		putCall("dragonfruit", "dragonfruit3", upstream.PutOptions{}, upstream.PreconditionNone),
		putCall("eggplant", "eggplant4", upstream.PutOptions{}, upstream.PreconditionNone),
	}},
	{"check-keys", []replayCall{getCall("apple"), getCall("banana"), getCall("carrot"), getCall("dragonfruit"), getCall("eggplant")}},
	{"list-keys", []replayCall{listCall(upstream.ListOptions{})}},
	{"list-keys-pagination", []replayCall{
		listCall(upstream.ListOptions{Limit: 4}),
		listCall(upstream.ListOptions{Limit: 4, Cursor: "CgdiYXRjaC0y"}),
	}},
	{"list-keys-prefix", []replayCall{listCall(upstream.ListOptions{Prefix: "ba"})}},
	{"get-item-round-1", []replayCall{getCall("apple")}},
	{"insert-item-add-failure", []replayCall{
		putCall("apple", "", upstream.PutOptions{Mode: upstream.PutAdd}, upstream.PreconditionAbsent),
	}},
	{"insert-item-prepend-set-metadata", []replayCall{
		putCall("apple", "prefix", upstream.PutOptions{Mode: upstream.PutPrepend, Metadata: "meta"}, upstream.PreconditionNone),
	}},
	{"get-item-round-2", []replayCall{getCall("apple")}},
	{"insert-item-generation-match-failure", []replayCall{
		putCall("apple", "", upstream.PutOptions{IfGenerationMatch: new(uint64(1750707679010223))}, upstream.PreconditionGeneration),
	}},
	{"insert-item-append", []replayCall{
		putCall("apple", "suffix", upstream.PutOptions{Mode: upstream.PutAppend}, upstream.PreconditionNone),
	}},
	{"get-item-round-3", []replayCall{getCall("apple")}},
	{"delete-item-nonexistent-suppress-error", []replayCall{
		deleteCall("apple23", upstream.DeleteOptions{Force: true}, upstream.PreconditionNone),
	}},
	{"delete-item-generation-match-failure", []replayCall{
		deleteCall("apple", upstream.DeleteOptions{IfGenerationMatch: new(uint64(1750707679477774))}, upstream.PreconditionGeneration),
	}},
	{"cleanup", []replayCall{
		listCall(upstream.ListOptions{Consistency: upstream.ConsistencyEventual}),
		deleteCall("apple", upstream.DeleteOptions{}, upstream.PreconditionNone),
		deleteCall("banana", upstream.DeleteOptions{}, upstream.PreconditionNone),
		deleteCall("batch-1", upstream.DeleteOptions{}, upstream.PreconditionNone),
		deleteCall("batch-2", upstream.DeleteOptions{}, upstream.PreconditionNone),
		deleteCall("carrot", upstream.DeleteOptions{}, upstream.PreconditionNone),
		deleteCall("dragonfruit", upstream.DeleteOptions{}, upstream.PreconditionNone),
		deleteCall("eggplant", upstream.DeleteOptions{}, upstream.PreconditionNone),
	}},
}

func TestClientFidelity(t *testing.T) {
	t.Parallel()
	for _, rc := range clientRecordings {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			interactions := kvtest.ItemInteractions(t, kvtest.LoadRecording(t, rc.name), recordedStore)
			if len(interactions) != len(rc.calls) {
				t.Fatalf("recording has %d item interactions, the table %d calls", len(interactions), len(rc.calls))
			}
			srv := newReplayServer(t, interactions)
			client := newFidelityClient(t, srv.URL)
			for i, cl := range rc.calls {
				in := interactions[i]
				t.Run(strconv.Itoa(i)+" "+cl.name, func(t *testing.T) {
					cl.run(t.Context(), t, client, in.Response)
				})
				// Each call must make exactly one request, or every later
				// response would answer the wrong call.
				sent := srv.requests()
				if len(sent) != i+1 {
					t.Fatalf("after call %d (%s) the server saw %d requests, want %d", i, cl.name, len(sent), i+1)
				}
				t.Run(strconv.Itoa(i)+" request", func(t *testing.T) {
					checkRequest(t, in.Request, sent[i])
				})
			}
		})
	}
}

// TestClientFidelityBatch marks the batch recording as known and pending.
func TestClientFidelityBatch(t *testing.T) {
	t.Skip("batch-create-keys: the client has no batch call yet; the next issue adds it")
}

// TestClientRecordingsCovered fails when a recording appears that no test
// replays, so new fixtures are not silently ignored.
func TestClientRecordingsCovered(t *testing.T) {
	t.Parallel()
	known := map[string]bool{
		// Store-level calls, kept for context; the client has none.
		"list-store": true, "create-store": true, "get-store": true,
		// Skipped until the client gains batch writes.
		"batch-create-keys": true,
	}
	for _, rc := range clientRecordings {
		known[rc.name] = true
	}
	entries, err := os.ReadDir(kvtest.RecordingsDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok && !e.IsDir() && !known[name] {
			t.Errorf("recording %s is replayed by no test", e.Name())
		}
	}
}

// TestClientCursorURLEncoding replays the one recording of a cursor with
// base64 padding. It comes from 2023, when the store family was still
// /resources/stores/object/ and go-fastly sent no consistency parameter, so
// the client's path and full query cannot match it; what must match is the
// cursor as it went on the wire, '=' escaped as %3D.
func TestClientCursorURLEncoding(t *testing.T) {
	t.Parallel()
	rec := kvtest.LoadRecording(t, "history/2023-04-object_store_558e0b14/list-keys-pagination")
	if len(rec.Interactions) != 2 {
		t.Fatalf("recording has %d interactions, want 2", len(rec.Interactions))
	}
	srv := newReplayServer(t, rec.Interactions)
	client := newFidelityClient(t, srv.URL)

	first, err := client.ListKeys(t.Context(), recordedStore, upstream.ListOptions{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	const padded = "CgtkcmFnb25mcnVpdA=="
	if first.NextCursor != padded {
		t.Fatalf("NextCursor = %q, recorded %q", first.NextCursor, padded)
	}
	if want := []string{"apple", "banana", "carrot", "dragonfruit"}; !slices.Equal(first.Keys, want) {
		t.Errorf("first page keys = %q, want %q", first.Keys, want)
	}
	second, err := client.ListKeys(t.Context(), recordedStore, upstream.ListOptions{Limit: 4, Cursor: first.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(second.Keys, []string{"eggplant"}) || second.NextCursor != "" {
		t.Errorf("last page = %q cursor %q, want [eggplant] and no cursor", second.Keys, second.NextCursor)
	}

	sent := srv.requests()
	if len(sent) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(sent))
	}
	for i, got := range sent {
		u, err := rec.Interactions[i].Request.ParsedURL()
		if err != nil {
			t.Fatal(err)
		}
		// consistency sorts first in url.Values.Encode, so the rest of the
		// query must be the recorded one byte for byte.
		if want := "consistency=strong&" + u.RawQuery; got.query != want {
			t.Errorf("request %d query = %q, want %q", i, got.query, want)
		}
		if want := "/resources/stores/kv/" + recordedStore + "/keys"; got.path != want {
			t.Errorf("request %d path = %q, want %q", i, got.path, want)
		}
	}
	if !strings.Contains(sent[1].query, "cursor=CgtkcmFnb25mcnVpdA%3D%3D") {
		t.Errorf("cursor not escaped as recorded: %q", sent[1].query)
	}
}
