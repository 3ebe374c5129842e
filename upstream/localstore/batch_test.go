package localstore_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// batchSuccess is Fastly's recorded answer to a batch.
const batchSuccess = `{"type":"","title":"success","errors":[]}`

func batchTarget(store string) string { return "/resources/stores/kv/" + store + "/batch" }

// line is one batch line for key with value base64-encoded, plus extra
// JSON fields (already encoded, each "name":value).
func line(key, value string, extra ...string) string {
	k, err := json.Marshal(key)
	if err != nil {
		panic(err)
	}
	fields := append([]string{`"key":` + string(k), `"value":"` + base64.StdEncoding.EncodeToString([]byte(value)) + `"`}, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

// batch sends body to the batch endpoint of storeID, chunked as go-fastly
// sends it when chunked is set.
func (h *harness) batch(t *testing.T, body string, chunked bool) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // no known length: the request goes out chunked
	}
	return h.raw(t, http.MethodPut, batchTarget(storeID), http.Header{"Content-Type": {"application/x-ndjson"}}, r)
}

// wantBatchOK checks the recorded success answer, byte for byte.
func wantBatchOK(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || string(body) != batchSuccess {
		t.Fatalf("batch = %d %s, want 200 %s", resp.StatusCode, body, batchSuccess)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if resp.ContentLength != int64(len(batchSuccess)) {
		t.Errorf("Content-Length = %d, want %d", resp.ContentLength, len(batchSuccess))
	}
}

// lineErr is one expected entry of a batch's errors.
type lineErr struct {
	index int
	key   string
}

// wantBatchErrors checks a 400 batch answer lists exactly the given lines,
// in Fastly's shape: code a string, every field present and no other.
func wantBatchErrors(t *testing.T, resp *http.Response, body []byte, want []lineErr) {
	t.Helper()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("batch = %d %s, want 400", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	type batchError struct {
		Key    *string `json:"key"`
		Index  *int    `json:"index"`
		Code   *string `json:"code"` // a number would not decode
		Reason *string `json:"reason"`
	}
	var got struct {
		Type   *string      `json:"type"`
		Title  *string      `json:"title"`
		Errors []batchError `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if got.Type == nil || *got.Type == "" || got.Title == nil || *got.Title == "" {
		t.Errorf("type and title must be non-empty strings: %s", body)
	}
	var have []lineErr
	for _, e := range got.Errors {
		if e.Key == nil || e.Index == nil || e.Code == nil || e.Reason == nil {
			t.Fatalf("error entry misses a field: %s", body)
		}
		if *e.Code != "400" || *e.Reason == "" {
			t.Errorf("entry %d: code %q reason %q, want \"400\" and a reason", *e.Index, *e.Code, *e.Reason)
		}
		have = append(have, lineErr{*e.Index, *e.Key})
	}
	if !slices.Equal(have, want) {
		t.Errorf("errors = %+v, want %+v; body %s", have, want, body)
	}
}

// TestBatchRecorded sends the recorded batch requests, chunked and with
// the indented second line, as go-fastly sent them: the answer is the
// current recording's, byte for byte, and both keys read back as VALUE.
// The 2023 recording's request is the same; Fastly then answered with an
// empty body, which the store does not imitate.
func TestBatchRecorded(t *testing.T) {
	t.Parallel()
	want := kvtest.LoadRecording(t, "batch-create-keys").Interactions[0].Response
	if want.Body != batchSuccess {
		t.Fatalf("recorded body %q, want %q", want.Body, batchSuccess)
	}
	for _, name := range []string{"batch-create-keys", "history/2023-05-10_52dbb58f/batch-create-keys"} {
		req := kvtest.LoadRecording(t, name).Interactions[0].Request
		if !strings.Contains(req.Body, "\n    {") {
			t.Fatalf("%s: expected the indented second line in %q", name, req.Body)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				resp, body := h.raw(t, req.Method, batchTarget(storeID), req.Headers, io.MultiReader(strings.NewReader(req.Body)))
				wantBatchOK(t, resp, body)
				if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
				for _, k := range []string{"batch-1", "batch-2"} {
					if item := h.get(t, k); string(item.Value) != "VALUE" || item.Metadata != "" {
						t.Errorf("%s = %q metadata %q, want VALUE and none", k, item.Value, item.Metadata)
					}
				}
				if n := h.store.Count(localstore.RequestBatch); n != 1 {
					t.Errorf("Count(RequestBatch) = %d, want 1", n)
				}
			})
		})
	}
}

// item is an expected item after a batch.
type item struct{ value, meta string }

// TestBatchLines checks how lines are read and applied: whitespace, blank
// lines, line endings, duplicates, per-line metadata, ignored fields. Each
// case starts with "keep" = "old" with metadata "m".
func TestBatchLines(t *testing.T) {
	t.Parallel()
	keep := item{"old", "m"}
	tests := []struct {
		name string
		body string
		// want is every item afterwards.
		want map[string]item
	}{
		{name: "empty body", body: "", want: map[string]item{"keep": keep}},
		{name: "blank lines only", body: "\n  \n\t\r\n\n", want: map[string]item{"keep": keep}},
		{name: "one line without a newline", body: line("a", "VALUE"),
			want: map[string]item{"keep": keep, "a": {"VALUE", ""}}},
		{name: "CRLF and a trailing newline", body: line("a", "1") + "\r\n" + line("b", "2") + "\r\n",
			want: map[string]item{"keep": keep, "a": {"1", ""}, "b": {"2", ""}}},
		{name: "indentation and blank lines", body: "\n\n    " + line("a", "1") + "  \n\n\t" + line("b", "2") + "\t\n\n",
			want: map[string]item{"keep": keep, "a": {"1", ""}, "b": {"2", ""}}},
		{name: "a later line for the same key wins", body: strings.Join([]string{
			line("a", "1", `"metadata":"first"`), line("b", "2"), line("a", "3"),
		}, "\n"), want: map[string]item{"keep": keep, "a": {"3", ""}, "b": {"2", ""}}},
		{name: "overwrite clears metadata", body: line("keep", "new"),
			want: map[string]item{"keep": {"new", ""}}},
		{name: "metadata per line", body: line("keep", "new", `"metadata":"m2"`) + "\n" + line("a", "1", `"metadata":"ma"`) + "\n" + line("b", "2"),
			want: map[string]item{"keep": {"new", "m2"}, "a": {"1", "ma"}, "b": {"2", ""}}},
		{name: "empty value", body: `{"key":"a","value":""}`,
			want: map[string]item{"keep": keep, "a": {"", ""}}},
		{name: "unknown fields and background_fetch are ignored",
			body: line("a", "1", `"background_fetch":true`, `"foo":{"bar":[1,null]}`, `"Key":"zzz"`, `"VALUE":7`) + "\n" + line("b", "2", `"background_fetch":false`),
			want: map[string]item{"keep": keep, "a": {"1", ""}, "b": {"2", ""}}},
		{name: "null optional fields are absent",
			body: line("a", "1", `"metadata":null`, `"time_to_live_sec":null`, `"background_fetch":null`),
			want: map[string]item{"keep": keep, "a": {"1", ""}}},
		{name: "JSON escapes in key and metadata",
			body: `{"key":"caf\u00e9\/x","value":"VkFMVUU=","metadata":"\u00e9 \"q\""}`,
			want: map[string]item{"keep": keep, "café/x": {"VALUE", `é "q"`}}},
		{name: "keys Fastly accepts but URLs find awkward",
			body: line("a b%/c", "1") + "\n" + line("[*]", "2") + "\n" + line(strings.Repeat("k", upstream.MaxKeyBytes), "3"),
			want: map[string]item{"keep": keep, "a b%/c": {"1", ""}, "[*]": {"2", ""}, strings.Repeat("k", upstream.MaxKeyBytes): {"3", ""}}},
		{name: "metadata at its limit", body: line("a", "1", `"metadata":"`+strings.Repeat("m", upstream.MaxMetadataBytes)+`"`),
			want: map[string]item{"keep": keep, "a": {"1", strings.Repeat("m", upstream.MaxMetadataBytes)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				h.put(t, "keep", "old", upstream.PutOptions{Metadata: "m"})
				for _, chunked := range []bool{false, true} {
					resp, body := h.batch(t, tt.body, chunked)
					wantBatchOK(t, resp, body)
					got := map[string]item{}
					for _, k := range h.listAll(t, upstream.ListOptions{}) {
						it := h.get(t, k)
						got[k] = item{string(it.Value), it.Metadata}
					}
					if !maps.Equal(got, tt.want) {
						t.Errorf("chunked %v: items = %q, want %q", chunked, got, tt.want)
					}
				}
			})
		})
	}
}

// TestBatchLineErrors checks that a batch with bad lines answers 400
// listing exactly those lines (index among non-blank lines; key when the
// line parsed), and applies none of its lines, good ones included.
func TestBatchLineErrors(t *testing.T) {
	t.Parallel()
	good := line("a", "VALUE")
	mixed := strings.Join([]string{
		good,                                   // 0
		"not json",                             // 1
		"",                                     // blank: not counted
		"   ",                                  // blank: not counted
		line("b", "VALUE"),                     // 2
		`{"key":"a#b","value":"VkFMVUU="}`,     // 3
		`  {"value":"VkFMVUU="}`,               // 4
		line("keep", "overwritten"),            // 5
		`{"key":"c","value":"VkFMVUU"}`,        // 6: unpadded
		`{"key":"d","value":"VkFMVUU=","x":1}`, // 7
	}, "\n")
	tests := []struct {
		name string
		body string
		want []lineErr
	}{
		{name: "mixed valid and invalid", body: mixed, want: []lineErr{{1, ""}, {3, "a#b"}, {4, ""}, {6, "c"}}},
		{name: "every line bad", body: "x\n\ny\n", want: []lineErr{{0, ""}, {1, ""}}},
		{name: "bad first line", body: "{}\n" + good, want: []lineErr{{0, ""}}},
	}
	// Single bad lines, sent after a good one, with the key reported.
	for _, bad := range []struct {
		name, line, key string
	}{
		{"JSON array", `[1,2]`, ""},
		{"JSON string", `"s"`, ""},
		{"JSON null", `null`, ""},
		{"truncated object", `{"key":"k","value":"VkFMVUU="`, ""},
		{"two objects on a line", good + " " + good, ""},
		{"invalid UTF-8", "{\"key\":\"a\xffb\",\"value\":\"VkFMVUU=\"}", ""},
		{"key not a string", `{"key":1,"value":"VkFMVUU="}`, ""},
		{"key null", `{"key":null,"value":"VkFMVUU="}`, ""},
		{"key in the wrong case", `{"KEY":"k","value":"VkFMVUU="}`, ""},
		{"empty key", `{"key":"","value":"VkFMVUU="}`, ""},
		{"key with a pipe", `{"key":"a|b","value":"VkFMVUU="}`, "a|b"},
		{"key with a dot-dot segment", `{"key":"../x","value":"VkFMVUU="}`, "../x"},
		{"key with a newline", `{"key":"a\nb","value":"VkFMVUU="}`, "a\nb"},
		{"key of 1025 bytes", line(strings.Repeat("k", upstream.MaxKeyBytes+1), "v"), strings.Repeat("k", upstream.MaxKeyBytes+1)},
		{"acme challenge key", line(".well-known/acme-challenge/x", "v"), ".well-known/acme-challenge/x"},
		{"missing value", `{"key":"k"}`, "k"},
		{"value null", `{"key":"k","value":null}`, "k"},
		{"value not a string", `{"key":"k","value":12}`, ""},
		{"value unpadded", `{"key":"k","value":"VkFMVUU"}`, "k"},
		{"value with trailing bits", `{"key":"k","value":"VkFMVUV="}`, "k"},
		{"value URL-safe base64", `{"key":"k","value":"-_-_"}`, "k"},
		{"value with an escaped line break", `{"key":"k","value":"VkFM\nVUU="}`, "k"},
		{"value not base64", `{"key":"k","value":"!!!!"}`, "k"},
		{"metadata of 2001 bytes", line("k", "v", `"metadata":"`+strings.Repeat("m", upstream.MaxMetadataBytes+1)+`"`), "k"},
		{"metadata with a line break", line("k", "v", `"metadata":"a\nb"`), "k"},
		{"metadata not a string", line("k", "v", `"metadata":1`), ""},
		{"ttl zero", line("k", "v", `"time_to_live_sec":0`), "k"},
		{"ttl negative", line("k", "v", `"time_to_live_sec":-5`), "k"},
		{"ttl fractional", line("k", "v", `"time_to_live_sec":1.5`), ""},
		{"ttl exponent", line("k", "v", `"time_to_live_sec":1e3`), ""},
		{"ttl a string", line("k", "v", `"time_to_live_sec":"60"`), ""},
		{"ttl overflows", line("k", "v", `"time_to_live_sec":99999999999999999999`), ""},
		{"background_fetch not a bool", line("k", "v", `"background_fetch":"yes"`), ""},
	} {
		tests = append(tests, struct {
			name string
			body string
			want []lineErr
		}{bad.name, good + "\n\n" + bad.line + "\n", []lineErr{{1, bad.key}}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				h.put(t, "keep", "old", upstream.PutOptions{Metadata: "m"})
				before := h.get(t, "keep")
				resp, body := h.batch(t, tt.body, false)
				wantBatchErrors(t, resp, body, tt.want)
				if keys := h.listAll(t, upstream.ListOptions{}); !slices.Equal(keys, []string{"keep"}) {
					t.Errorf("after a refused batch the store lists %q, want [keep]", keys)
				}
				after := h.get(t, "keep")
				if string(after.Value) != "old" || after.Metadata != "m" || after.Generation != before.Generation {
					t.Errorf("a refused batch changed keep to %q/%q/%d", after.Value, after.Metadata, after.Generation)
				}
			})
		})
	}
}

// TestBatchStoreCreation checks a batch creates a store that was never
// written, as a single PUT does, and that an empty or refused batch does
// not.
func TestBatchStoreCreation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantStore  bool
	}{
		{"valid batch", line("a", "v"), http.StatusOK, true},
		{"empty batch", "", http.StatusOK, false},
		{"refused batch", line("a", "v") + "\nnot json", http.StatusBadRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				h := newHarness(t, opts)
				resp, body := h.batch(t, tt.body, false)
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("batch = %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
				}
				_, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})
				if tt.wantStore {
					wantStatus(t, err, 0, 0)
				} else {
					wantStatus(t, err, http.StatusNotFound, 0)
				}
			})
		})
	}
}

// TestBatchTTLAndMetadata checks time_to_live_sec and metadata per line
// with the injectable clock: a line without them clears both on an
// existing item, as every write does.
func TestBatchTTLAndMetadata(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		clock := newClock()
		opts.Now = clock.Now
		h := newHarness(t, opts)
		h.put(t, "a", "old", upstream.PutOptions{Metadata: "m", TimeToLive: 5 * time.Second})
		resp, body := h.batch(t, strings.Join([]string{
			line("a", "new"), // clears a's TTL and metadata
			line("b", "b", `"time_to_live_sec":10`),
			line("c", "c", `"time_to_live_sec":20`, `"metadata":"mc"`),
		}, "\n"), false)
		wantBatchOK(t, resp, body)

		steps := []struct {
			advance time.Duration
			want    map[string]item // every live item
		}{
			{0, map[string]item{"a": {"new", ""}, "b": {"b", ""}, "c": {"c", "mc"}}},
			{10*time.Second - time.Millisecond, map[string]item{"a": {"new", ""}, "b": {"b", ""}, "c": {"c", "mc"}}},
			{time.Millisecond, map[string]item{"a": {"new", ""}, "c": {"c", "mc"}}},
			{10 * time.Second, map[string]item{"a": {"new", ""}}},
		}
		for i, st := range steps {
			clock.Advance(st.advance)
			got := map[string]item{}
			for _, k := range h.listAll(t, upstream.ListOptions{}) {
				it := h.get(t, k)
				got[k] = item{string(it.Value), it.Metadata}
			}
			if !maps.Equal(got, st.want) {
				t.Errorf("step %d: items %q, want %q", i, got, st.want)
			}
			for _, k := range []string{"a", "b", "c"} {
				if _, ok := st.want[k]; !ok {
					_, err := h.c.GetItem(t.Context(), storeID, k)
					wantStatus(t, err, http.StatusNotFound, 0)
				}
			}
		}
	})
}

// TestHugeTTL checks a time to live too long for the record's expiry (Unix
// nanoseconds end in 2262) is kept as a very long one, on PUT and in a
// batch, instead of wrapping around into an expiry in the past.
func TestHugeTTL(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		clock := newClock()
		opts.Now = clock.Now
		h := newHarness(t, opts)
		resp, body := h.raw(t, http.MethodPut, itemTarget("put"), http.Header{"time_to_live_sec": {"9000000000"}}, strings.NewReader("v"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT = %d %s", resp.StatusCode, body)
		}
		resp, body = h.batch(t, line("batch", "v", `"time_to_live_sec":9000000000`), false)
		wantBatchOK(t, resp, body)
		clock.Advance(50 * 365 * 24 * time.Hour)
		for _, k := range []string{"put", "batch"} {
			if got := string(h.get(t, k).Value); got != "v" {
				t.Errorf("%s = %q", k, got)
			}
		}
	})
}

// TestBatchTooLarge checks MaxBatchBytes, for a declared length and for a
// chunked body: a body at the limit is read, one byte over is refused with
// 413 and nothing is written.
func TestBatchTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 200
	pad := func(n int) string {
		l := line("a", "VALUE")
		return l + strings.Repeat(" ", n-len(l)) // trailing spaces are tolerated
	}
	tests := []struct {
		name    string
		body    string
		chunked bool
		want    int
	}{
		{"at the limit", pad(limit), false, http.StatusOK},
		{"one over", pad(limit + 1), false, http.StatusRequestEntityTooLarge},
		{"far over", pad(1 << 20), false, http.StatusRequestEntityTooLarge},
		{"chunked at the limit", pad(limit), true, http.StatusOK},
		{"chunked one over", pad(limit + 1), true, http.StatusRequestEntityTooLarge},
		{"chunked far over", pad(1 << 20), true, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, localstore.Config{MaxBatchBytes: limit})
			resp, body := h.batch(t, tt.body, tt.chunked)
			if tt.want == http.StatusOK {
				wantBatchOK(t, resp, body)
				return
			}
			wantJSONError(t, resp, body, tt.want)
			_, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})
			wantStatus(t, err, http.StatusNotFound, 0)
		})
	}
}

// TestBatchValueLimit checks MaxValueBytes per line: a value over it is a
// line error with its key; a line longer than any valid line is a line
// error without one (it is not parsed), and the lines after it keep their
// indexes.
func TestBatchValueLimit(t *testing.T) {
	t.Parallel()
	const limit = 16
	h := newHarness(t, localstore.Config{MaxValueBytes: limit})
	v := func(n int) string { return strings.Repeat("v", n) }

	resp, body := h.batch(t, line("at", v(limit)), true)
	wantBatchOK(t, resp, body)
	if got := h.get(t, "at").Value; len(got) != limit {
		t.Errorf("stored %d bytes, want %d", len(got), limit)
	}

	resp, body = h.batch(t, strings.Join([]string{
		line("ok", v(1)),
		line("over", v(limit+1)),
		line("huge", v(200<<10)), // far longer than a 16-byte value's line
		line("x", v(1), `"pad":"`+strings.Repeat(" ", 70<<10)+`"`),
		"bad",
	}, "\n"), true)
	wantBatchErrors(t, resp, body, []lineErr{{1, "over"}, {2, ""}, {3, ""}, {4, ""}})
	if keys := h.listAll(t, upstream.ListOptions{}); !slices.Equal(keys, []string{"at"}) {
		t.Errorf("listed %q, want [at]", keys)
	}
}

// TestBatchGenerations checks every line of a batch gets a generation above
// the one before it, above every earlier write, and below every later one,
// whatever the clock does; a key written twice keeps the later line's.
func TestBatchGenerations(t *testing.T) {
	t.Parallel()
	for _, cl := range []struct {
		name string
		fake bool
		step time.Duration
	}{
		{"real clock", false, 0},
		{"frozen clock", true, 0},
		{"clock stepping back", true, -time.Hour},
	} {
		t.Run(cl.name, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, opts localstore.Config) {
				clock := newClock()
				if cl.fake {
					opts.Now = clock.Now
				}
				h := newHarness(t, opts)
				h.put(t, "before", "v", upstream.PutOptions{})
				last := h.get(t, "before").Generation
				clock.Advance(cl.step)

				order := []string{"k1", "k2", "k3", "k4", "k0"} // k0 is written first and last
				resp, body := h.batch(t, strings.Join([]string{
					line("k0", "first"), line("k1", "v"), line("k2", "v"), line("k3", "v"), line("k4", "v"), line("k0", "last"),
				}, "\n"), false)
				wantBatchOK(t, resp, body)
				for _, k := range order {
					g := h.get(t, k).Generation
					if g <= last {
						t.Errorf("%s: generation %d, not above the previous %d", k, g, last)
					}
					last = g
				}
				if got := string(h.get(t, "k0").Value); got != "last" {
					t.Errorf("k0 = %q, want last", got)
				}
				clock.Advance(cl.step)
				h.put(t, "after", "v", upstream.PutOptions{})
				if g := h.get(t, "after").Generation; g <= last {
					t.Errorf("after: generation %d, not above the batch's %d", g, last)
				}
				// A compare-and-set with a batch generation works.
				h.put(t, "k0", "cas", upstream.PutOptions{IfGenerationMatch: new(last)})
			})
		})
	}
}

// TestBatchPersistence checks a batch on bbolt survives a reopen with its
// values, metadata, generations and expiries.
func TestBatchPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newClock()
	before := map[string]*upstream.Item{}
	var maxGen uint64
	func() {
		h := openHarness(t, localstore.Config{Dir: dir, Now: clock.Now})
		defer h.close(t)
		resp, body := h.batch(t, strings.Join([]string{
			line("a", "alpha", `"metadata":"ma"`),
			line("b/c", "beta"),
			line("ttl", "short", `"time_to_live_sec":3600`),
			line("empty", ""),
		}, "\n"), true)
		wantBatchOK(t, resp, body)
		for _, k := range []string{"a", "b/c", "ttl", "empty"} {
			before[k] = h.get(t, k)
			maxGen = max(maxGen, before[k].Generation)
		}
	}()

	h := newHarness(t, localstore.Config{Dir: dir, Now: clock.Now})
	for k, want := range before {
		got := h.get(t, k)
		if !bytes.Equal(got.Value, want.Value) || got.Metadata != want.Metadata ||
			got.Generation != want.Generation || !got.LastModified.Equal(want.LastModified) {
			t.Errorf("%s after reopen = %+v, want %+v", k, got, want)
		}
	}
	resp, body := h.batch(t, line("new", "v"), false)
	wantBatchOK(t, resp, body)
	if g := h.get(t, "new").Generation; g <= maxGen {
		t.Errorf("first generation after reopen %d, not above %d", g, maxGen)
	}
	clock.Advance(time.Hour)
	_, err := h.c.GetItem(t.Context(), storeID, "ttl")
	wantStatus(t, err, http.StatusNotFound, 0)
}

// TestBatchManyLines checks a 1000-line batch is applied in full on both
// backends (on bbolt in one transaction; durations are not asserted).
func TestBatchManyLines(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		const n = 1000
		var b strings.Builder
		want := make([]string, n)
		for i := range n {
			want[i] = fmt.Sprintf("key-%04d", i)
			b.WriteString(line(want[i], "value-"+want[i], fmt.Sprintf(`"metadata":"m%d"`, i)) + "\n")
		}
		resp, body := h.batch(t, b.String(), true)
		wantBatchOK(t, resp, body)
		if got := h.listAll(t, upstream.ListOptions{}); !slices.Equal(got, want) {
			t.Fatalf("listed %d keys, want %d", len(got), n)
		}
		for _, i := range []int{0, 1, 499, 998, 999} {
			it := h.get(t, want[i])
			if string(it.Value) != "value-"+want[i] || it.Metadata != fmt.Sprintf("m%d", i) {
				t.Errorf("%s = %q/%q", want[i], it.Value, it.Metadata)
			}
		}
	})
}

// TestBatchIsAtomicForReaders checks a listing running beside a batch sees
// all of it or none of it.
func TestBatchIsAtomicForReaders(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, opts localstore.Config) {
		h := newHarness(t, opts)
		const n = 500
		var b strings.Builder
		for i := range n {
			b.WriteString(line(fmt.Sprintf("k%03d", i), "v") + "\n")
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			// Not h.batch: t.Fatal must not run off the test's goroutine.
			req, err := http.NewRequest(http.MethodPut, h.srv.URL+batchTarget(storeID), strings.NewReader(b.String()))
			if err != nil {
				t.Errorf("batch: %v", err)
				return
			}
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Errorf("batch: %v", err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("batch = %d", resp.StatusCode)
			}
		})
		for seen := false; !seen; {
			select {
			case <-done:
				seen = true // one more listing after the batch
			default:
			}
			page, err := h.c.ListKeys(t.Context(), storeID, upstream.ListOptions{})
			count := 0
			if err == nil {
				count = len(page.Keys)
			} else {
				wantStatus(t, err, http.StatusNotFound, 0) // not created yet
			}
			if count != 0 && count != n {
				t.Errorf("a listing saw %d of the batch's %d keys", count, n)
				break
			}
			if seen && count != n {
				t.Errorf("after the batch a listing saw %d keys, want %d", count, n)
			}
		}
		wg.Wait()
	})
}

// TestRequestCounts checks Count per kind, that the kinds add up to
// Requests(), and that OnRequest sees every request as it arrives.
func TestRequestCounts(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	store, err := localstore.Open(localstore.Config{OnRequest: func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Method+" "+r.URL.EscapedPath())
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	client := *srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	item := itemTarget("k")
	requests := []struct {
		method, target, body string
		kind                 localstore.RequestKind
		status               int
	}{
		{http.MethodPut, item, "v", localstore.RequestPut, http.StatusOK},
		{http.MethodGet, item, "", localstore.RequestGet, http.StatusOK},
		{http.MethodHead, item, "", localstore.RequestHead, http.StatusOK},
		{http.MethodGet, listTarget, "", localstore.RequestList, http.StatusOK},
		{http.MethodPut, batchTarget(storeID), line("b", "v"), localstore.RequestBatch, http.StatusOK},
		{http.MethodPut, batchTarget(storeID), "bad", localstore.RequestBatch, http.StatusBadRequest},
		{http.MethodPut, batchTarget("elsewhere"), "", localstore.RequestBatch, http.StatusOK},
		{http.MethodGet, itemTarget("a#b"), "", localstore.RequestGet, http.StatusBadRequest},
		{http.MethodDelete, item, "", localstore.RequestDelete, http.StatusNoContent},
		{http.MethodGet, item, "", localstore.RequestGet, http.StatusNotFound},
		{http.MethodGet, batchTarget(storeID), "", localstore.RequestOther, http.StatusMethodNotAllowed},
		{http.MethodPost, batchTarget(storeID), "x", localstore.RequestOther, http.StatusMethodNotAllowed},
		{http.MethodPost, item, "x", localstore.RequestOther, http.StatusMethodNotAllowed},
		{http.MethodGet, "/not/an/endpoint", "", localstore.RequestOther, http.StatusNotFound},
		{http.MethodGet, listTarget + "/a/../b", "", localstore.RequestOther, http.StatusBadRequest},
		// No PUT on the listing: the router redirects to keys/.
		{http.MethodPut, listTarget, "x", localstore.RequestOther, http.StatusTemporaryRedirect},
	}
	want := map[localstore.RequestKind]int64{}
	var wantSeen []string
	for _, rq := range requests {
		req, err := http.NewRequestWithContext(t.Context(), rq.method, srv.URL+rq.target, strings.NewReader(rq.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != rq.status {
			t.Errorf("%s %s = %d, want %d", rq.method, rq.target, resp.StatusCode, rq.status)
		}
		want[rq.kind]++
		wantSeen = append(wantSeen, rq.method+" "+rq.target)
	}
	var sum int64
	for kind := localstore.RequestOther; kind <= localstore.RequestBatch; kind++ {
		if got := store.Count(kind); got != want[kind] {
			t.Errorf("Count(%v) = %d, want %d", kind, got, want[kind])
		}
		sum += store.Count(kind)
	}
	if n := store.Requests(); n != int64(len(requests)) || sum != n {
		t.Errorf("Requests() = %d and the counts add up to %d, want %d", n, sum, len(requests))
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, wantSeen) {
		t.Errorf("OnRequest saw %q, want %q", seen, wantSeen)
	}
}
