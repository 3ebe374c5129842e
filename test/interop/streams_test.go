//go:build unix

package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvgate/kvgate/internal/testutil"
	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
)

// streamBatchFlags make kvgate cut even a short stream into several batch
// PUTs, with more than one in flight, so that the tests cross batch
// boundaries and exercise the ordering rules between batches.
var streamBatchFlags = []string{"-batch-lines", "3", "-batch-concurrency", "2"}

// sendBatch streams msgs through one BatchPutItems call and returns its
// result. When kvgate ends the call early, Send reports io.EOF and the
// status comes from CloseAndRecv, as grpc-go documents.
func sendBatch(ctx context.Context, kv kvv1.KVStoreServiceClient, msgs ...*kvv1.BatchPutItemsRequest) (*kvv1.BatchPutItemsResponse, error) {
	stream, err := kv.BatchPutItems(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

// item is a plain upsert of key with value.
func item(key, value string) *kvv1.BatchItem {
	return &kvv1.BatchItem{Key: key, Value: []byte(value)}
}

// failureSummary renders failures as "index:key:code" for comparison.
func failureSummary(fs []*kvv1.BatchFailure) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%d:%s:%s", f.GetIndex(), f.GetKey(), f.GetCode()))
	}
	return out
}

// badRequestFields returns the fields a status's BadRequest details name.
func badRequestFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		}
	}
	return fields
}

// streamedPage is one StreamKeys message as received.
type streamedPage struct {
	keys   []string
	cursor string
}

// collectKeys runs StreamKeys to the end and returns its messages.
func collectKeys(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, req *kvv1.StreamKeysRequest) []streamedPage {
	t.Helper()
	stream, err := kv.StreamKeys(ctx, req)
	if err != nil {
		t.Fatalf("StreamKeys(%v): %v", req, err)
	}
	var pages []streamedPage
	for resp, err := range testutil.Messages(stream.Recv) {
		if err != nil {
			t.Fatalf("StreamKeys(%v) after %d messages: %v", req, len(pages), err)
		}
		pages = append(pages, streamedPage{keys: resp.GetKeys(), cursor: resp.GetCursor()})
		if len(pages) > 10_000 {
			t.Fatalf("StreamKeys(%v) sent more than 10000 messages", req)
		}
	}
	return pages
}

func allKeys(pages []streamedPage) []string {
	var keys []string
	for _, p := range pages {
		keys = append(keys, p.keys...)
	}
	return keys
}

// checkPages checks the shape StreamKeys promises: every message carries
// 1 to pageSize keys, each message but the last a cursor to resume after
// it, and (when lastEmpty) the last message an empty cursor.
func checkPages(t *testing.T, what string, pages []streamedPage, pageSize int, lastEmpty bool) {
	t.Helper()
	for i, p := range pages {
		if len(p.keys) == 0 || len(p.keys) > pageSize {
			t.Errorf("%s: message %d carries %d keys %q, want 1 to %d", what, i, len(p.keys), p.keys, pageSize)
		}
		last := i == len(pages)-1
		if !last && p.cursor == "" {
			t.Errorf("%s: message %d of %d has an empty cursor, but more keys follow", what, i, len(pages))
		}
		if last && lastEmpty && p.cursor != "" {
			t.Errorf("%s: the last message has cursor %q, want empty: nothing follows", what, p.cursor)
		}
	}
}

// TestGRPCStreams drives kvgate's streaming RPCs with grpc-go: the client
// stream of BatchPutItems, the server stream of StreamKeys, and PutItems,
// their unary sibling.
func TestGRPCStreams(t *testing.T) {
	t.Parallel()
	p := startKVGateWith(t, nil, append([]string{"-data", t.TempDir()}, streamBatchFlags...)...)
	kv := kvv1.NewKVStoreServiceClient(dial(t, p.Addr))

	// Each subtest writes to its own store id, so they run in parallel
	// without seeing each other's keys.
	runParallel(t, kv, []kvSubtest{
		{"BatchPutItemsThenStreamKeys", testBatchPutItemsThenStreamKeys},
		{"StreamKeysFullLastPage", testStreamKeysFullLastPage},
		{"PutItems", testPutItems},
		{"BatchPutItemsStoreIDChange", testBatchPutItemsStoreIDChange},
		{"BatchPutItemsWithoutStoreID", testBatchPutItemsWithoutStoreID},
		{"BatchPutItemsEmpty", testBatchPutItemsEmpty},
		{"StreamKeysInvalidPageSize", testStreamKeysInvalidPageSize},
	})
}

// testBatchPutItemsThenStreamKeys writes a batch across several messages and
// batches, with refusals, then enumerates it with StreamKeys.
func testBatchPutItemsThenStreamKeys(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "stream-batch"
	// Keys are written in reverse order so that StreamKeys' byte order
	// is its own. Positions count across messages from 0.
	msgs := []*kvv1.BatchPutItemsRequest{
		{StoreId: store, Items: []*kvv1.BatchItem{ // 0-3
			item("k12", "v12"), item("k11", "v11"), item("k10", "v10"), item("k09", "v09"),
		}},
		{Items: []*kvv1.BatchItem{ // 4-8; store_id only in the first message
			item("k08", "v08"), item("k07", "v07"), item("k06", "v06"), item("k05", "first"),
			item("bad#key", "x"), // 8: '#' is outside Fastly's key rules
		}},
		{StoreId: store, Items: []*kvv1.BatchItem{ // 9-12; repeating the same store_id is allowed
			item("k05", "second"), // the later item for a key wins
			item("k04", "v04"), item("k03", "v03"),
			{Key: "k03", Value: []byte("+tail"), Mode: kvv1.PutMode_PUT_MODE_APPEND}, // after k03's upsert
		}},
		{Items: []*kvv1.BatchItem{ // 13-16
			item("k02", "v02"), item("k01", "v01"), item("k00", "v00"),
			{Key: "k00", Value: []byte("again"), Mode: kvv1.PutMode_PUT_MODE_ADD}, // 16: k00 is taken by 15
		}},
	}
	resp, err := sendBatch(ctx, kv, msgs...)
	if err != nil {
		t.Fatalf("BatchPutItems: %v", err)
	}
	if resp.GetWritten() != 15 {
		t.Errorf("BatchPutItems written = %d, want 15 of 17 items", resp.GetWritten())
	}
	if got, want := failureSummary(resp.GetFailures()), []string{"8:bad#key:invalid_argument", "16:k00:already_exists"}; !slices.Equal(got, want) {
		t.Errorf("BatchPutItems failures = %q, want %q (full: %v)", got, want, resp.GetFailures())
	}
	for key, want := range map[string]string{"k12": "v12", "k05": "second", "k03": "v03+tail", "k00": "v00"} {
		if got := mustGet(ctx, t, kv, store, key).GetValue(); string(got) != want {
			t.Errorf("after BatchPutItems, %s = %q, want %q", key, got, want)
		}
	}

	var want []string
	for i := range 13 {
		want = append(want, fmt.Sprintf("k%02d", i))
	}
	checkStreamKeysPaging(ctx, t, kv, store, want)
}

// checkStreamKeysPaging enumerates store, which holds the keys want (13 of
// them), in pages of 4: whole, resumed from every message's cursor, cut by
// max_keys and resumed, and narrowed by a prefix.
func checkStreamKeysPaging(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string, want []string) {
	// 13 keys, 4 a page: several messages, the last one short.
	pages := collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 4})
	if got := allKeys(pages); !slices.Equal(got, want) {
		t.Fatalf("StreamKeys(page_size 4) = %q, want %q", got, want)
	}
	if len(pages) < 4 {
		t.Errorf("StreamKeys(page_size 4) of 13 keys sent %d messages, want at least 4", len(pages))
	}
	checkPages(t, "StreamKeys(page_size 4)", pages, 4, true)

	// Each message's cursor resumes right after its keys.
	delivered := 0
	for i, pg := range pages[:len(pages)-1] {
		delivered += len(pg.keys)
		rest := collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 4, Cursor: pg.cursor})
		if got := allKeys(rest); !slices.Equal(got, want[delivered:]) {
			t.Errorf("StreamKeys resumed from message %d's cursor = %q, want %q", i, got, want[delivered:])
		}
	}

	// max_keys stops inside a page; the cursor still resumes exactly.
	limited := collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 4, MaxKeys: 6})
	if got := allKeys(limited); !slices.Equal(got, want[:6]) {
		t.Fatalf("StreamKeys(max_keys 6) = %q, want %q", got, want[:6])
	}
	checkPages(t, "StreamKeys(max_keys 6)", limited, 4, false)
	last := limited[len(limited)-1].cursor
	if last == "" {
		t.Fatal("StreamKeys(max_keys 6) ended with an empty cursor, but keys follow")
	}
	rest := collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 4, Cursor: last})
	if got := allKeys(rest); !slices.Equal(got, want[6:]) {
		t.Errorf("StreamKeys resumed after max_keys 6 = %q, want %q", got, want[6:])
	}

	// A prefix narrows the stream.
	byPrefix := allKeys(collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, Prefix: "k1", PageSize: 2}))
	if want := []string{"k10", "k11", "k12"}; !slices.Equal(byPrefix, want) {
		t.Errorf("StreamKeys(prefix k1) = %q, want %q", byPrefix, want)
	}
}

// testStreamKeysFullLastPage enumerates keys that fill the last page exactly.
func testStreamKeysFullLastPage(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "stream-full-page"
	resp, err := sendBatch(ctx, kv, &kvv1.BatchPutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{
		item("a", "1"), item("b", "2"), item("c", "3"), item("d", "4"),
	}})
	if err != nil || resp.GetWritten() != 4 {
		t.Fatalf("BatchPutItems = %v, %v; want 4 written", resp, err)
	}
	// The keys fill the last page exactly: whatever cursor the last
	// message carries must resume to nothing, not fail or repeat.
	pages := collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 2})
	if got, want := allKeys(pages), []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("StreamKeys(page_size 2) = %q, want %q", got, want)
	}
	checkPages(t, "StreamKeys(page_size 2) of 4 keys", pages, 2, false)
	if last := pages[len(pages)-1].cursor; last != "" {
		t.Logf("the last of %d messages carries cursor %q although nothing follows", len(pages), last)
		if rest := allKeys(collectKeys(ctx, t, kv, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 2, Cursor: last})); len(rest) != 0 {
			t.Errorf("StreamKeys resumed from the last cursor = %q, want no keys", rest)
		}
	}
}

// testPutItems checks PutItems' last-wins, append and per-item refusal rules.
func testPutItems(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "stream-put-items"
	resp, err := kv.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{
		item("x", "1"), item("y", "2"), item("x", "3"), // the later x wins
		{Key: "y", Value: []byte("+"), Mode: kvv1.PutMode_PUT_MODE_APPEND},
		{Key: "z", Value: []byte("z"), Metadata: "bad\nmetadata"}, // 4: no CR or LF allowed
		item("w", "4"),
	}})
	if err != nil {
		t.Fatalf("PutItems: %v", err)
	}
	if resp.GetWritten() != 5 {
		t.Errorf("PutItems written = %d, want 5 of 6", resp.GetWritten())
	}
	if got, want := failureSummary(resp.GetFailures()), []string{"4:z:invalid_argument"}; !slices.Equal(got, want) {
		t.Errorf("PutItems failures = %q, want %q", got, want)
	}
	for key, want := range map[string]string{"x": "3", "y": "2+", "w": "4"} {
		if got := mustGet(ctx, t, kv, store, key).GetValue(); string(got) != want {
			t.Errorf("after PutItems, %s = %q, want %q", key, got, want)
		}
	}
	_, err = kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "z"})
	wantCode(t, "GetItem of the refused item", err, codes.NotFound)
}

// testBatchPutItemsStoreIDChange checks that a store_id change mid-stream ends
// the call with InvalidArgument and a BatchProgress of what came before.
func testBatchPutItemsStoreIDChange(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store, other = "stream-change-a", "stream-change-b"
	_, err := sendBatch(ctx, kv,
		&kvv1.BatchPutItemsRequest{StoreId: store, Items: []*kvv1.BatchItem{item("one", "1"), item("two", "2")}},
		&kvv1.BatchPutItemsRequest{StoreId: other, Items: []*kvv1.BatchItem{item("three", "3")}},
	)
	st := wantCode(t, "BatchPutItems changing store_id mid-stream", err, codes.InvalidArgument)
	if fields := badRequestFields(st); !slices.Contains(fields, "store_id") {
		t.Errorf("BadRequest field violations = %q (details %v), want one naming store_id", fields, st.Details())
	}
	// The BatchProgress detail accounts for the items received before
	// the change; the second message's were refused unread.
	var progress *kvv1.BatchProgress
	for _, d := range st.Details() {
		if bp, ok := d.(*kvv1.BatchProgress); ok {
			progress = bp
		}
	}
	if progress == nil {
		t.Errorf("details %v lack a BatchProgress", st.Details())
	} else if progress.GetReceived() != 2 {
		t.Errorf("BatchProgress.received = %d, want 2 (the first message's items)", progress.GetReceived())
	}
	_, err = kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: other, Key: "three"})
	wantCode(t, "GetItem of an item sent under the changed store_id", err, codes.NotFound)
}

// testBatchPutItemsWithoutStoreID checks that a first message without
// store_id is InvalidArgument.
func testBatchPutItemsWithoutStoreID(t *testing.T, kv kvv1.KVStoreServiceClient) {
	_, err := sendBatch(testContext(t), kv, &kvv1.BatchPutItemsRequest{Items: []*kvv1.BatchItem{item("a", "1")}})
	st := wantCode(t, "BatchPutItems without store_id", err, codes.InvalidArgument)
	if fields := badRequestFields(st); !slices.Contains(fields, "store_id") {
		t.Errorf("BadRequest field violations = %q, want one naming store_id", fields)
	}
}

// testBatchPutItemsEmpty checks that a stream of no messages succeeds with
// nothing written.
func testBatchPutItemsEmpty(t *testing.T, kv kvv1.KVStoreServiceClient) {
	resp, err := sendBatch(testContext(t), kv)
	if err != nil {
		t.Fatalf("BatchPutItems of no messages: %v", err)
	}
	if resp.GetWritten() != 0 || len(resp.GetFailures()) != 0 {
		t.Errorf("BatchPutItems of no messages = %v, want nothing written or failed", resp)
	}
}

// testStreamKeysInvalidPageSize checks that a page_size over 1000 is
// InvalidArgument naming page_size.
func testStreamKeysInvalidPageSize(t *testing.T, kv kvv1.KVStoreServiceClient) {
	stream, err := kv.StreamKeys(testContext(t), &kvv1.StreamKeysRequest{StoreId: "stream-batch", PageSize: 1001})
	if err == nil {
		_, err = stream.Recv()
	}
	st := wantCode(t, "StreamKeys with page_size 1001", err, codes.InvalidArgument)
	if fields := badRequestFields(st); !slices.Contains(fields, "page_size") {
		t.Errorf("BadRequest field violations = %q, want one naming page_size", fields)
	}
}

// grpcurlStreams runs grpcurl with stdin and returns stdout and stderr
// apart: a server stream's messages are parsed from stdout alone.
func grpcurlStreams(ctx context.Context, grpcurl string, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, grpcurl, args...)
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return out.String(), errOut.String(), err
}

// TestGRPCurlStreams drives the streaming RPCs with grpcurl: a client
// stream read from a file of concatenated JSON messages, and a server
// stream printed as a sequence of JSON objects.
func TestGRPCurlStreams(t *testing.T) {
	t.Parallel()
	grpcurl := grpcurlPath(t)
	p := startKVGateWith(t, nil, append([]string{"-data", t.TempDir()}, streamBatchFlags...)...)
	ctx := testContext(t)

	// Three messages, as a shell user would write them into a file; only
	// the first names the store. Values are base64: "c", "a", "e", ...
	messages := `{"storeId":"curl-stream","items":[{"key":"c","value":"Yw=="},{"key":"a","value":"YQ=="}]}
{"items":[{"key":"e","value":"ZQ=="},{"key":"bad#key","value":"eA=="}]}
{"storeId":"curl-stream","items":[{"key":"b","value":"Yg=="},{"key":"d","value":"ZA==","metadata":"m","timeToLive":"60s"}]}
`
	out, errOut, err := grpcurlStreams(ctx, grpcurl, strings.NewReader(messages),
		"-plaintext", "-d", "@", p.Addr, kvServiceName+"/BatchPutItems")
	if err != nil {
		t.Fatalf("grpcurl BatchPutItems: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	// Decoded loosely so the JSON types are checked: uint64s are strings.
	var resp struct {
		Written  any              `json:"written"`
		Failures []map[string]any `json:"failures"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("grpcurl BatchPutItems printed non-JSON (%v):\n%s", err, out)
	}
	if resp.Written != "5" {
		t.Errorf("written = %#v, want \"5\"; grpcurl printed:\n%s", resp.Written, out)
	}
	if len(resp.Failures) != 1 || resp.Failures[0]["index"] != "3" || resp.Failures[0]["key"] != "bad#key" ||
		resp.Failures[0]["code"] != "invalid_argument" {
		t.Errorf("failures = %v, want one for index \"3\", key bad#key, code invalid_argument; grpcurl printed:\n%s", resp.Failures, out)
	}

	// The server stream: each message is one JSON object on stdout.
	out, errOut, err = grpcurlStreams(ctx, grpcurl, nil,
		"-plaintext", "-d", `{"storeId":"curl-stream","pageSize":2}`, p.Addr, kvServiceName+"/StreamKeys")
	if err != nil {
		t.Fatalf("grpcurl StreamKeys: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var (
		keys    []string
		objects int
	)
	for {
		var msg struct {
			Keys   []string `json:"keys"`
			Cursor string   `json:"cursor"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("grpcurl StreamKeys message %d is not the JSON expected (%v); it printed:\n%s", objects, err, out)
		}
		objects++
		if len(msg.Keys) == 0 || len(msg.Keys) > 2 {
			t.Errorf("message %d carries keys %q, want 1 or 2", objects, msg.Keys)
		}
		if (msg.Cursor == "") != (objects == 3) {
			t.Errorf("message %d has cursor %q; want one on every message but the last", objects, msg.Cursor)
		}
		keys = append(keys, msg.Keys...)
	}
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(keys, want) || objects != 3 {
		t.Errorf("grpcurl StreamKeys printed %d messages with keys %q, want 3 with %q; it printed:\n%s", objects, keys, want, out)
	}

	// A store_id change mid-stream fails the call as a whole.
	change := `{"storeId":"curl-stream","items":[{"key":"f","value":"Zg=="}]}
{"storeId":"curl-other","items":[{"key":"g","value":"Zw=="}]}`
	out, errOut, err = grpcurlStreams(ctx, grpcurl, strings.NewReader(change),
		"-plaintext", "-d", "@", p.Addr, kvServiceName+"/BatchPutItems")
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("grpcurl BatchPutItems changing store_id: err = %v, want a non-zero exit; stdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "InvalidArgument") || !strings.Contains(errOut, "store_id") {
		t.Errorf("grpcurl's error lacks InvalidArgument or store_id; stderr:\n%s", errOut)
	}
}
