package service_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/service"
)

// corpusStore is the (valid) store id the corpus uses where the store id is
// not what is wrong with a request.
const corpusStore = "corpus"

// corpusMaxValue is the corpus stack's value limit: small, so that values
// over it are cheap to send.
const corpusMaxValue = 4 << 10

// corpusCase is one invalid request. Either it fails as a whole (fields
// names every field the google.rpc.BadRequest detail must name), or it is a
// batch write whose items are all invalid, which succeeds with every item
// reported in failures.
type corpusCase struct {
	rpc      string
	category string
	name     string
	// binaryOnly cases carry something protojson cannot marshal (an
	// invalid google.protobuf.Duration), so they skip the JSON protocol.
	binaryOnly bool

	call   func(context.Context, kvv1connect.KVStoreServiceClient) error
	fields []string
	// check, when set, looks further at the RPC's error.
	check func(*testing.T, error)

	batch    func(context.Context, kvv1connect.KVStoreServiceClient) (written uint64, failures []*kvv1.BatchFailure, err error)
	failures []wantFailure
}

// corpusProtocol is a client of the corpus stack in one protocol.
type corpusProtocol struct {
	name   string
	json   bool
	client kvv1connect.KVStoreServiceClient
}

// TestBadInputCorpus sends well over a hundred distinct invalid requests
// through every RPC and every protocol. Requests that are invalid as a
// whole must fail with InvalidArgument and a google.rpc.BadRequest naming
// each bad field; batch writes of invalid items must report each item as
// an invalid_argument failure. None may reach the store, and the server
// must stay healthy.
func TestBadInputCorpus(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{MaxValueBytes: corpusMaxValue})
	cursors := foreignCursors(t)

	cases := corpusCases(cursors)
	byRPC, byCategory := tallyCorpus(t, cases)
	raws := rawUTF8Cases()
	if len(cases) < 100 {
		t.Fatalf("the corpus holds %d distinct invalid requests; want at least 100", len(cases))
	}

	protocols := corpusProtocols(st)
	byProtocol := runCorpus(t, st.URL, cases, raws, protocols)

	// Every case has finished: nothing may have reached the store.
	if n := st.Requests(); n != 0 {
		t.Errorf("the local store received %d requests; invalid input must never go upstream", n)
	}
	checkHealthy(t, st.URL)
	checkStillServes(t, st, protocols[0].client)

	total := len(cases) + len(raws)*len(rawWires)
	t.Logf("%d typed invalid requests (+ %d raw invalid-UTF-8 messages on %d wires = %d requests in all)",
		len(cases), len(raws), len(rawWires), total)
	logCounts(t, "by RPC", byRPC)
	logCounts(t, "by category", byCategory)
	logCounts(t, "by protocol", byProtocol)
	for _, p := range protocols {
		if byProtocol[p.name] == 0 {
			t.Errorf("no case went through %s", p.name)
		}
	}
}

// tallyCorpus counts the cases by RPC and by category, failing the test
// when two cases share a name.
func tallyCorpus(t *testing.T, cases []corpusCase) (byRPC, byCategory map[string]int) {
	t.Helper()
	byRPC = map[string]int{}
	byCategory = map[string]int{}
	names := map[string]bool{}
	for _, tc := range cases {
		byRPC[tc.rpc]++
		byCategory[tc.category]++
		name := tc.rpc + "/" + tc.category + "/" + tc.name
		if names[name] {
			t.Fatalf("case %s appears twice", name)
		}
		names[name] = true
	}
	return byRPC, byCategory
}

// corpusProtocols are clients of st in each protocol the corpus uses.
func corpusProtocols(st *kvtest.Stack) []corpusProtocol {
	return []corpusProtocol{
		{name: "connect_proto/http1", client: st.NewClient(kvtest.HTTP1Client())},
		{name: "connect_json/h2c", json: true, client: st.NewClient(kvtest.H2CClient(), connecthttp.WithProtoJSON())},
		{name: "grpc/h2c", client: st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())},
		{name: "grpcweb/http1", client: st.NewClient(kvtest.HTTP1Client(), connecthttp.WithGRPCWeb())},
	}
}

// runCorpus sends every typed case through one of protocols, taking them
// in turn (a binary-only case skips the JSON protocol), and every raw
// invalid-UTF-8 message on every wire, all in parallel subtests of
// "cases". It returns when all have finished, with how many requests went
// through each protocol and wire.
func runCorpus(t *testing.T, baseURL string, cases []corpusCase, raws []rawUTF8Case, protocols []corpusProtocol) map[string]int {
	t.Helper()
	byProtocol := map[string]int{}
	t.Run("cases", func(t *testing.T) {
		for i, tc := range cases {
			p := protocols[i%len(protocols)]
			if tc.binaryOnly && p.json {
				p = protocols[(i+1)%len(protocols)]
			}
			byProtocol[p.name]++
			t.Run(tc.rpc+"/"+tc.category+"/"+tc.name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				checkCorpusCase(t, tc, p.client)
			})
		}
		for _, rc := range raws {
			for _, w := range rawWires {
				byProtocol["raw "+w.name]++
				t.Run("raw_utf8/"+rc.rpc+"/"+rc.field+"/"+w.name, func(t *testing.T) {
					t.Parallel()
					ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
					defer cancel()
					checkRawUTF8(t, ctx, baseURL, rc, w)
				})
			}
		}
	})
	return byProtocol
}

// checkCorpusCase sends one typed case through client. A batch write must
// succeed, write nothing and report the expected failures; any other
// request must fail naming each of the case's fields.
func checkCorpusCase(t *testing.T, tc corpusCase, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if tc.batch != nil {
		written, failures, err := tc.batch(ctx, client)
		mustOK(t, tc.rpc, err)
		if written != 0 {
			t.Errorf("%s wrote %d items; every item was invalid", tc.rpc, written)
		}
		checkFailures(t, failures, tc.failures)
		return
	}
	err := tc.call(ctx, client)
	for _, f := range tc.fields {
		assertInvalidField(t, err, f)
	}
	if tc.check != nil {
		tc.check(t, err)
	}
}

// checkHealthy checks that the server at baseURL reports itself healthy: a
// Connect JSON health check, and a binary one read with gRPC's own
// grpc.health.v1 schema. grpchealth's JSON spells the status
// SERVING_STATUS_SERVING (its copy of the schema renames the enum values;
// only the binary encoding matches gRPC's), so the JSON check takes either
// spelling.
func checkHealthy(t *testing.T, baseURL string) {
	t.Helper()
	resp, err := http.Post(baseURL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{"service":""}`))
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var health struct{ Status string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &health) != nil ||
		(health.Status != "SERVING" && health.Status != "SERVING_STATUS_SERVING") {
		t.Errorf("health check = %d %s; want 200 {\"status\":\"SERVING\"}", resp.StatusCode, body)
	} else if health.Status != "SERVING" {
		t.Logf("health check JSON spells the status %q, not grpc.health.v1's \"SERVING\"", health.Status)
	}
	reqBody, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: kvv1connect.KVStoreServiceName})
	resp, err = http.Post(baseURL+"/grpc.health.v1.Health/Check", "application/proto", bytes.NewReader(reqBody))
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var hc healthpb.HealthCheckResponse
	if resp.StatusCode != http.StatusOK || proto.Unmarshal(body, &hc) != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("binary health check of %s = %d %q; want 200 SERVING", kvv1connect.KVStoreServiceName, resp.StatusCode, body)
	}
}

// checkStillServes checks that st answers a valid request normally and
// passes it to the store (the store is unknown to the local store: an
// empty listing or not_found are both normal answers).
func checkStillServes(t *testing.T, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: corpusStore}); err != nil {
		testutil.WantCode(t, "ListKeys after the corpus", err, connect.CodeNotFound)
	}
	if n := st.Requests(); n == 0 {
		t.Error("the valid ListKeys after the corpus did not reach the store")
	}
}

func logCounts(t *testing.T, title string, m map[string]int) {
	t.Helper()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-28s %4d", k, m[k])
	}
	t.Logf("%s:%s", title, b.String())
}

// kvgateCursors are real kvgate cursors, issued by another stack for the
// store "other" and the prefix "a".
type kvgateCursors struct {
	list   string // ListKeys next_cursor
	stream string // StreamKeys cursor
}

// foreignCursors obtains kvgate cursors from a stack of its own, so that
// the corpus stack never receives a valid request.
func foreignCursors(t *testing.T) kvgateCursors {
	t.Helper()
	st := kvtest.Start(t, kvtest.Options{})
	client := st.NewClient(kvtest.H2CClient())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"a1", "a2", "a3"} {
		_, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "other", Key: k, Value: []byte("v")})
		mustOK(t, "PutItem on the cursor stack", err)
	}
	page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "other", Prefix: "a", Limit: 1})
	mustOK(t, "ListKeys on the cursor stack", err)
	msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "other", Prefix: "a", PageSize: 1, MaxKeys: 1})
	mustOK(t, "StreamKeys on the cursor stack", err)
	if page.GetNextCursor() == "" || len(msgs) == 0 || msgs[len(msgs)-1].GetCursor() == "" {
		t.Fatalf("the cursor stack issued no cursors: %v, %v", page, msgs)
	}
	return kvgateCursors{list: page.GetNextCursor(), stream: msgs[len(msgs)-1].GetCursor()}
}

// corpusCases builds the typed corpus.
func corpusCases(cur kvgateCursors) []corpusCase {
	var cases []corpusCase
	add := func(c corpusCase) { cases = append(cases, c) }

	get := func(req *kvv1.GetItemRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.GetItem, req)
	}
	put := func(req *kvv1.PutItemRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.PutItem, req)
	}
	del := func(req *kvv1.DeleteItemRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.DeleteItem, req)
	}
	list := func(req *kvv1.ListKeysRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.ListKeys, req)
	}
	stream := func(req *kvv1.StreamKeysRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			msgs, err := streamKeys(ctx, c, req)
			if err == nil || len(msgs) != 0 {
				return fmt.Errorf("StreamKeys sent %d messages and ended with %v; want an error before any message", len(msgs), err)
			}
			return err
		}
	}
	putItems := func(req *kvv1.PutItemsRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			_, err := c.PutItems(ctx, req)
			return err
		}
	}
	batch := func(msgs ...*kvv1.BatchPutItemsRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			_, err := batchPut(ctx, c, msgs)
			return err
		}
	}

	// Store ids, on every RPC.
	storeIDs := []struct{ name, id string }{
		{"empty", ""},
		{"too long", strings.Repeat("s", 129)},
		{"slash", "a/b"},
		{"space", "a b"},
		{"unicode", "störe"},
		{"dot", "a.b"},
		{"percent", "a%2Fb"},
	}
	for _, s := range storeIDs {
		id := s.id
		for _, r := range []struct {
			rpc  string
			call func(context.Context, kvv1connect.KVStoreServiceClient) error
		}{
			{"GetItem", get(&kvv1.GetItemRequest{StoreId: id, Key: "k"})},
			{"PutItem", put(&kvv1.PutItemRequest{StoreId: id, Key: "k", Value: []byte("v")})},
			{"DeleteItem", del(&kvv1.DeleteItemRequest{StoreId: id, Key: "k"})},
			{"ListKeys", list(&kvv1.ListKeysRequest{StoreId: id})},
			{"StreamKeys", stream(&kvv1.StreamKeysRequest{StoreId: id})},
			{"PutItems", putItems(&kvv1.PutItemsRequest{StoreId: id, Items: []*kvv1.BatchItem{{Key: "k", Value: []byte("v")}}})},
			{"BatchPutItems", batch(&kvv1.BatchPutItemsRequest{StoreId: id, Items: []*kvv1.BatchItem{{Key: "k", Value: []byte("v")}}})},
		} {
			add(corpusCase{rpc: r.rpc, category: "store_id", name: s.name, call: r.call, fields: []string{"store_id"}})
		}
	}

	// Keys: every forbidden character and form, on GetItem; the characters
	// and some forms again on DeleteItem and PutItem.
	forbiddenChars := []struct{ name, key string }{
		{"CR", "a\rb"},
		{"LF", "a\nb"},
		{"hash", "a#b"},
		{"semicolon", "a;b"},
		{"question mark", "a?b"},
		{"caret", "a^b"},
		{"pipe", "a|b"},
	}
	forbiddenForms := []struct{ name, key string }{
		{"empty", ""},
		{"dot", "."},
		{"dotdot", ".."},
		{"leading dot slash", "./a"},
		{"inner dot slash", "a/./b"},
		{"leading dotdot slash", "../a"},
		{"inner dotdot slash", "a/../b"},
		{"trailing slash dot", "a/."},
		{"trailing slash dotdot", "a/.."},
		{"acme prefix", ".well-known/acme-challenge"},
		{"acme path", ".well-known/acme-challenge/token"},
		{"single NUL", "\x00"},
		{"single tab", "\t"},
		{"single US", "\x1f"},
		{"single space", " "},
		{"single U+FFFE", "\ufffe"},
		{"single U+FFFF", "\uffff"},
	}
	longKeys := []struct{ name, key string }{
		{"1025 bytes ASCII", strings.Repeat("k", 1025)},
		{"1025 bytes 2-byte runes", strings.Repeat("é", 512) + "k"},
		{"1025 bytes 3-byte runes", strings.Repeat("€", 341) + "kk"},
		{"1025 bytes 4-byte runes", strings.Repeat("😀", 256) + "k"},
	}
	for _, k := range slices.Concat(forbiddenChars, forbiddenForms, longKeys) {
		add(corpusCase{rpc: "GetItem", category: "key", name: k.name,
			call: get(&kvv1.GetItemRequest{StoreId: corpusStore, Key: k.key}), fields: []string{"key"}})
	}
	for _, k := range slices.Concat(forbiddenChars, forbiddenForms[:5], longKeys[:2]) {
		add(corpusCase{rpc: "DeleteItem", category: "key", name: k.name,
			call: del(&kvv1.DeleteItemRequest{StoreId: corpusStore, Key: k.key, Force: true}), fields: []string{"key"}})
	}
	for _, k := range slices.Concat(forbiddenChars[:2], forbiddenForms[5:10], longKeys[3:]) {
		add(corpusCase{rpc: "PutItem", category: "key", name: k.name,
			call: put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: k.key, Value: []byte("v")}), fields: []string{"key"}})
	}

	// PutItem's other fields.
	metadata := []struct{ name, md string }{
		{"2001 bytes", strings.Repeat("m", 2001)},
		{"2001 bytes multi-byte", strings.Repeat("é", 1000) + "m"},
		{"CR", "a\rb"},
		{"LF", "a\nb"},
		{"CRLF", "a\r\nb"},
	}
	for _, m := range metadata {
		add(corpusCase{rpc: "PutItem", category: "metadata", name: m.name,
			call: put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Metadata: m.md}), fields: []string{"metadata"}})
	}
	add(corpusCase{rpc: "PutItem", category: "value", name: "limit plus one",
		call: put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Value: make([]byte, corpusMaxValue+1)}), fields: []string{"value"}})
	add(corpusCase{rpc: "PutItem", category: "value", name: "twice the limit",
		call: put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Value: make([]byte, 2*corpusMaxValue)}), fields: []string{"value"}})
	ttls := []struct {
		name   string
		d      *durationpb.Duration
		binary bool
	}{
		{"zero", durationpb.New(0), false},
		{"negative", durationpb.New(-time.Second), false},
		{"fractional", durationpb.New(1500 * time.Millisecond), false},
		{"half a second", durationpb.New(500 * time.Millisecond), false},
		{"one nanosecond", durationpb.New(time.Nanosecond), false},
		{"mixed signs", &durationpb.Duration{Seconds: 1, Nanos: -1}, true},
		{"out of range", &durationpb.Duration{Seconds: 315_576_000_001}, true},
	}
	for _, d := range ttls {
		add(corpusCase{rpc: "PutItem", category: "time_to_live", name: d.name, binaryOnly: d.binary,
			call: put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", TimeToLive: d.d}), fields: []string{"time_to_live"}})
	}
	add(corpusCase{rpc: "PutItem", category: "conflict", name: "add with generation 1",
		call:   put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD, IfGenerationMatch: proto.Uint64(1)}),
		fields: []string{"if_generation_match"}})
	add(corpusCase{rpc: "PutItem", category: "conflict", name: "add with generation 0",
		call:   put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD, IfGenerationMatch: proto.Uint64(0)}),
		fields: []string{"if_generation_match"}})
	for _, m := range []kvv1.PutMode{4, 99, -1} {
		add(corpusCase{rpc: "PutItem", category: "enum", name: fmt.Sprintf("mode %d", m),
			call: put(&kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Mode: m}), fields: []string{"mode"}})
	}
	add(corpusCase{rpc: "PutItem", category: "multiple", name: "every field",
		call: put(&kvv1.PutItemRequest{StoreId: "", Key: "a|b", Metadata: "x\ny", Value: make([]byte, corpusMaxValue+1),
			Mode: 9, TimeToLive: durationpb.New(0)}),
		fields: []string{"store_id", "key", "metadata", "value", "mode", "time_to_live"}})
	add(corpusCase{rpc: "GetItem", category: "multiple", name: "store id and key",
		call: get(&kvv1.GetItemRequest{}), fields: []string{"store_id", "key"}})

	// Listings: limits, enums, prefixes and cursors.
	for _, n := range []uint32{1001, 1 << 20, math.MaxUint32} {
		add(corpusCase{rpc: "ListKeys", category: "limit", name: fmt.Sprint(n),
			call: list(&kvv1.ListKeysRequest{StoreId: corpusStore, Limit: n}), fields: []string{"limit"}})
		add(corpusCase{rpc: "StreamKeys", category: "limit", name: fmt.Sprint(n),
			call: stream(&kvv1.StreamKeysRequest{StoreId: corpusStore, PageSize: n}), fields: []string{"page_size"}})
	}
	for _, c := range []kvv1.Consistency{3, 1000, -1} {
		add(corpusCase{rpc: "ListKeys", category: "enum", name: fmt.Sprintf("consistency %d", c),
			call: list(&kvv1.ListKeysRequest{StoreId: corpusStore, Consistency: c}), fields: []string{"consistency"}})
		add(corpusCase{rpc: "StreamKeys", category: "enum", name: fmt.Sprintf("consistency %d", c),
			call: stream(&kvv1.StreamKeysRequest{StoreId: corpusStore, Consistency: c}), fields: []string{"consistency"}})
	}
	prefixes := []struct{ name, prefix string }{
		{"hash", "#"},
		{"LF", "\n"},
		{"CR", "a\r"},
		{"semicolon", "a;"},
		{"question mark", "?"},
		{"caret", "a^"},
		{"pipe", "|"},
		{"1025 bytes", strings.Repeat("p", 1025)},
		{"1025 bytes multi-byte", strings.Repeat("é", 512) + "p"},
	}
	for _, p := range prefixes {
		add(corpusCase{rpc: "ListKeys", category: "prefix", name: p.name,
			call: list(&kvv1.ListKeysRequest{StoreId: corpusStore, Prefix: p.prefix}), fields: []string{"prefix"}})
		add(corpusCase{rpc: "StreamKeys", category: "prefix", name: p.name,
			call: stream(&kvv1.StreamKeysRequest{StoreId: corpusStore, Prefix: p.prefix}), fields: []string{"prefix"}})
	}
	randomBytes := []byte{0x9c, 0x13, 0xe0, 0x7a, 0x41, 0xfe, 0x02, 0xb8, 0x55, 0x6d, 0x30, 0xc1, 0x8f, 0x27, 0xda, 0x44, 0x19, 0xa3}
	cursors := []struct{ name, store, prefix, cursor string }{
		{"fastly raw cursor", corpusStore, "", "CgdiYXRjaC0y"},
		{"random base64url", corpusStore, "", base64.RawURLEncoding.EncodeToString(randomBytes)},
		{"random base64 padded", corpusStore, "", base64.StdEncoding.EncodeToString(randomBytes[:5])},
		{"garbage", corpusStore, "", "!!not a cursor!!"},
		{"percent garbage", corpusStore, "", "%00%ff"},
		{"json without scope", corpusStore, "", base64.RawURLEncoding.EncodeToString([]byte(`{"u":"CgdiYXRjaC0y"}`))},
		{"json with empty position", corpusStore, "", base64.RawURLEncoding.EncodeToString([]byte(`{"s":"0123456789abcdef"}`))},
		{"json array", corpusStore, "", base64.RawURLEncoding.EncodeToString([]byte(`["u","s"]`))},
		{"list cursor of another store", corpusStore, "a", cur.list},
		{"list cursor of another prefix", "other", "b", cur.list},
		{"list cursor without its prefix", "other", "", cur.list},
		{"stream cursor of another store", corpusStore, "a", cur.stream},
		{"stream cursor of another prefix", "other", "a1", cur.stream},
	}
	for _, c := range cursors {
		add(corpusCase{rpc: "ListKeys", category: "cursor", name: c.name,
			call: list(&kvv1.ListKeysRequest{StoreId: c.store, Prefix: c.prefix, Cursor: c.cursor}), fields: []string{"cursor"}})
		add(corpusCase{rpc: "StreamKeys", category: "cursor", name: c.name,
			call: stream(&kvv1.StreamKeysRequest{StoreId: c.store, Prefix: c.prefix, Cursor: c.cursor}), fields: []string{"cursor"}})
	}
	add(corpusCase{rpc: "ListKeys", category: "multiple", name: "every field",
		call:   list(&kvv1.ListKeysRequest{StoreId: "a b", Prefix: "#", Limit: 1001, Consistency: 5, Cursor: "garbage!"}),
		fields: []string{"store_id", "prefix", "limit", "consistency", "cursor"}})
	add(corpusCase{rpc: "StreamKeys", category: "multiple", name: "every field",
		call:   stream(&kvv1.StreamKeysRequest{StoreId: "a/b", Prefix: "a|", PageSize: 1001, Consistency: 5, Cursor: "CgdiYXRjaC0y", MaxKeys: 1}),
		fields: []string{"store_id", "prefix", "page_size", "consistency", "cursor"}})

	// Batch writes that fail as a whole.
	tooMany := make([]*kvv1.BatchItem, service.MaxPutItems+1)
	for i := range tooMany {
		tooMany[i] = &kvv1.BatchItem{Key: fmt.Sprintf("t/%05d", i), Value: []byte("v")}
	}
	add(corpusCase{rpc: "PutItems", category: "items", name: "10001 items",
		call: putItems(&kvv1.PutItemsRequest{StoreId: corpusStore, Items: tooMany}), fields: []string{"items"}})
	add(corpusCase{rpc: "PutItems", category: "multiple", name: "10001 items and no store id",
		call: putItems(&kvv1.PutItemsRequest{Items: tooMany}), fields: []string{"store_id", "items"}})
	progress := func(received uint64, failures int) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			_, p := batchProgress(t, "BatchPutItems", err, connect.CodeInvalidArgument)
			if p.GetReceived() != received || len(p.GetWritten()) != 0 || len(p.GetFailures()) != failures {
				t.Errorf("BatchProgress = %v; want %d received, none written, %d failures", p, received, failures)
			}
		}
	}
	add(corpusCase{rpc: "BatchPutItems", category: "store_id", name: "changed in the second message",
		call:   batch(&kvv1.BatchPutItemsRequest{StoreId: corpusStore}, &kvv1.BatchPutItemsRequest{StoreId: "other", Items: []*kvv1.BatchItem{{Key: "k"}}}),
		fields: []string{"store_id"}, check: progress(0, 0)})
	add(corpusCase{rpc: "BatchPutItems", category: "store_id", name: "changed after an invalid item",
		call: batch(&kvv1.BatchPutItemsRequest{StoreId: corpusStore, Items: []*kvv1.BatchItem{{Key: "a|b"}}},
			&kvv1.BatchPutItemsRequest{Items: []*kvv1.BatchItem{{Key: ""}}},
			&kvv1.BatchPutItemsRequest{StoreId: "other"}),
		fields: []string{"store_id"}, check: progress(2, 2)})
	add(corpusCase{rpc: "BatchPutItems", category: "store_id", name: "first message without store id",
		call: batch(&kvv1.BatchPutItemsRequest{Items: []*kvv1.BatchItem{{Key: "k", Value: []byte("v")}}}), fields: []string{"store_id"}})
	add(corpusCase{rpc: "BatchPutItems", category: "store_id", name: "store id only in the second message",
		call: batch(&kvv1.BatchPutItemsRequest{}, &kvv1.BatchPutItemsRequest{StoreId: corpusStore}), fields: []string{"store_id"}})

	// Invalid items inside batch writes: reported, not fatal.
	type itemKind struct {
		category, name string
		item           *kvv1.BatchItem
		field          string
		binary         bool
	}
	var kinds []itemKind
	for _, k := range slices.Concat(forbiddenChars, forbiddenForms, longKeys) {
		kinds = append(kinds, itemKind{"item key", k.name, &kvv1.BatchItem{Key: k.key, Value: []byte("v")}, "key", false})
	}
	for _, m := range metadata {
		kinds = append(kinds, itemKind{"item metadata", m.name, &kvv1.BatchItem{Key: "k", Metadata: m.md}, "metadata", false})
	}
	kinds = append(kinds, itemKind{"item value", "limit plus one", &kvv1.BatchItem{Key: "k", Value: make([]byte, corpusMaxValue+1)}, "value", false})
	for _, m := range []kvv1.PutMode{4, -1} {
		kinds = append(kinds, itemKind{"item enum", fmt.Sprintf("mode %d", m), &kvv1.BatchItem{Key: "k", Mode: m}, "mode", false})
	}
	for _, d := range ttls {
		kinds = append(kinds, itemKind{"item time_to_live", d.name, &kvv1.BatchItem{Key: "k", TimeToLive: d.d}, "time_to_live", d.binary})
	}
	kinds = append(kinds, itemKind{"item conflict", "add with generation", &kvv1.BatchItem{Key: "k", Mode: kvv1.PutMode_PUT_MODE_ADD, IfGenerationMatch: proto.Uint64(3)}, "if_generation_match", false})

	const invalid = "invalid_argument"
	filler := func() *kvv1.BatchItem { return &kvv1.BatchItem{Key: "", Value: []byte("filler")} }
	for _, k := range kinds {
		want := []wantFailure{
			{index: 0, key: "", code: invalid, field: "key"},
			{index: 1, key: k.item.GetKey(), code: invalid, field: k.field},
		}
		add(corpusCase{rpc: "PutItems", category: k.category, name: k.name, binaryOnly: k.binary, failures: want,
			batch: func(ctx context.Context, c kvv1connect.KVStoreServiceClient) (uint64, []*kvv1.BatchFailure, error) {
				res, err := c.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: corpusStore, Items: []*kvv1.BatchItem{filler(), k.item}})
				return res.GetWritten(), res.GetFailures(), err
			}})
		add(corpusCase{rpc: "BatchPutItems", category: k.category, name: k.name, binaryOnly: k.binary, failures: want,
			batch: func(ctx context.Context, c kvv1connect.KVStoreServiceClient) (uint64, []*kvv1.BatchFailure, error) {
				res, err := batchPut(ctx, c, []*kvv1.BatchPutItemsRequest{
					{StoreId: corpusStore, Items: []*kvv1.BatchItem{filler()}},
					{Items: []*kvv1.BatchItem{k.item}},
				})
				return res.GetWritten(), res.GetFailures(), err
			}})
	}
	// Every kind at once, in one list and spread over many messages.
	var all []*kvv1.BatchItem
	var allWant []wantFailure
	for _, k := range kinds {
		if k.binary {
			continue
		}
		all = append(all, k.item)
		allWant = append(allWant, wantFailure{index: uint64(len(all) - 1), key: k.item.GetKey(), code: invalid, field: k.field})
	}
	add(corpusCase{rpc: "PutItems", category: "items", name: "every invalid kind at once", failures: allWant,
		batch: func(ctx context.Context, c kvv1connect.KVStoreServiceClient) (uint64, []*kvv1.BatchFailure, error) {
			res, err := c.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: corpusStore, Items: all})
			return res.GetWritten(), res.GetFailures(), err
		}})
	add(corpusCase{rpc: "BatchPutItems", category: "items", name: "every invalid kind at once", failures: allWant,
		batch: func(ctx context.Context, c kvv1connect.KVStoreServiceClient) (uint64, []*kvv1.BatchFailure, error) {
			res, err := batchPut(ctx, c, batchMessages(corpusStore, all, 3))
			return res.GetWritten(), res.GetFailures(), err
		}})
	cases = append(cases, getItemCorpusCases()...)
	cases = append(cases, getItemsCorpusCases()...)
	cases = append(cases, watchCorpusCases()...)
	cases = append(cases, copyItemsCorpus(cur)...)
	cases = append(cases, deleteKeysCorpus(cur)...)
	return cases
}

// Raw requests with a string field that is not UTF-8, which generated
// clients refuse to send.

// utf8Placeholder marks the field to corrupt in a marshalled message; it is
// replaced by utf8Invalid, of the same length, so binary lengths hold.
const (
	utf8Placeholder = "@@@"
	utf8Invalid     = "@\xff@"
)

type rawUTF8Case struct {
	rpc       string
	procedure string
	streaming bool
	msg       proto.Message // carries utf8Placeholder in the field
	field     string        // the field's name, which the error must contain
}

func rawUTF8Cases() []rawUTF8Case {
	const p = utf8Placeholder
	filler := &kvv1.BatchItem{Key: ""} // invalid, in case the message were accepted
	return []rawUTF8Case{
		{"GetItem", kvv1connect.KVStoreServiceGetItemProcedure, false, &kvv1.GetItemRequest{StoreId: p, Key: "k"}, "store_id"},
		{"GetItem", kvv1connect.KVStoreServiceGetItemProcedure, false, &kvv1.GetItemRequest{StoreId: corpusStore, Key: p}, "key"},
		{"PutItem", kvv1connect.KVStoreServicePutItemProcedure, false, &kvv1.PutItemRequest{StoreId: p, Key: "k"}, "store_id"},
		{"PutItem", kvv1connect.KVStoreServicePutItemProcedure, false, &kvv1.PutItemRequest{StoreId: corpusStore, Key: p}, "key"},
		{"PutItem", kvv1connect.KVStoreServicePutItemProcedure, false, &kvv1.PutItemRequest{StoreId: corpusStore, Key: "k", Metadata: p}, "metadata"},
		{"DeleteItem", kvv1connect.KVStoreServiceDeleteItemProcedure, false, &kvv1.DeleteItemRequest{StoreId: p, Key: "k"}, "store_id"},
		{"DeleteItem", kvv1connect.KVStoreServiceDeleteItemProcedure, false, &kvv1.DeleteItemRequest{StoreId: corpusStore, Key: p}, "key"},
		{"ListKeys", kvv1connect.KVStoreServiceListKeysProcedure, false, &kvv1.ListKeysRequest{StoreId: p}, "store_id"},
		{"ListKeys", kvv1connect.KVStoreServiceListKeysProcedure, false, &kvv1.ListKeysRequest{StoreId: corpusStore, Prefix: p}, "prefix"},
		{"ListKeys", kvv1connect.KVStoreServiceListKeysProcedure, false, &kvv1.ListKeysRequest{StoreId: corpusStore, Cursor: p}, "cursor"},
		{"StreamKeys", kvv1connect.KVStoreServiceStreamKeysProcedure, true, &kvv1.StreamKeysRequest{StoreId: p}, "store_id"},
		{"StreamKeys", kvv1connect.KVStoreServiceStreamKeysProcedure, true, &kvv1.StreamKeysRequest{StoreId: corpusStore, Prefix: p}, "prefix"},
		{"StreamKeys", kvv1connect.KVStoreServiceStreamKeysProcedure, true, &kvv1.StreamKeysRequest{StoreId: corpusStore, Cursor: p}, "cursor"},
		{"BatchPutItems", kvv1connect.KVStoreServiceBatchPutItemsProcedure, true, &kvv1.BatchPutItemsRequest{StoreId: p, Items: []*kvv1.BatchItem{filler}}, "store_id"},
		{"BatchPutItems", kvv1connect.KVStoreServiceBatchPutItemsProcedure, true, &kvv1.BatchPutItemsRequest{StoreId: corpusStore, Items: []*kvv1.BatchItem{filler, {Key: p}}}, "key"},
		{"BatchPutItems", kvv1connect.KVStoreServiceBatchPutItemsProcedure, true, &kvv1.BatchPutItemsRequest{StoreId: corpusStore, Items: []*kvv1.BatchItem{filler, {Key: "k", Metadata: p}}}, "metadata"},
		{"PutItems", kvv1connect.KVStoreServicePutItemsProcedure, false, &kvv1.PutItemsRequest{StoreId: p, Items: []*kvv1.BatchItem{filler}}, "store_id"},
		{"PutItems", kvv1connect.KVStoreServicePutItemsProcedure, false, &kvv1.PutItemsRequest{StoreId: corpusStore, Items: []*kvv1.BatchItem{filler, {Key: p}}}, "key"},
		{"PutItems", kvv1connect.KVStoreServicePutItemsProcedure, false, &kvv1.PutItemsRequest{StoreId: corpusStore, Items: []*kvv1.BatchItem{filler, {Key: "k", Metadata: p}}}, "metadata"},
	}
}

// rawWire is one way to put a raw message on the wire.
type rawWire struct {
	name string
	json bool
	kind string // "connect", "grpc" or "grpcweb"
}

var rawWires = []rawWire{
	{name: "connect_proto", kind: "connect"},
	{name: "connect_json", json: true, kind: "connect"},
	{name: "grpc_proto", kind: "grpc"},
	{name: "grpcweb_proto", kind: "grpcweb"},
}

// rawOutcome is how a raw request failed, whatever the protocol.
type rawOutcome struct {
	status  int
	code    string
	message string
	fields  []string // of a google.rpc.BadRequest detail
}

func checkRawUTF8(t *testing.T, ctx context.Context, baseURL string, rc rawUTF8Case, w rawWire) {
	var body []byte
	var err error
	if w.json {
		body, err = protojson.Marshal(rc.msg)
	} else {
		body, err = proto.Marshal(rc.msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(body, []byte(utf8Placeholder)); n != 1 {
		t.Fatalf("the marshalled message holds the placeholder %d times", n)
	}
	body = bytes.Replace(body, []byte(utf8Placeholder), []byte(utf8Invalid), 1)

	codec := "proto"
	if w.json {
		codec = "json"
	}
	var contentType string
	hc := kvtest.HTTP1Client()
	switch {
	case w.kind == "connect" && !rc.streaming:
		contentType = "application/" + codec
	case w.kind == "connect":
		contentType = "application/connect+" + codec
		body = envelope(0, body)
	case w.kind == "grpc":
		contentType = "application/grpc+" + codec
		body = envelope(0, body)
		hc = kvtest.H2CClient()
	case w.kind == "grpcweb":
		contentType = "application/grpc-web+" + codec
		body = envelope(0, body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+rc.procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if w.kind == "grpc" {
		req.Header.Set("TE", "trailers")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", rc.procedure, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}

	var out rawOutcome
	switch {
	case w.kind == "connect" && !rc.streaming:
		out = connectUnaryOutcome(t, resp, respBody)
	case w.kind == "connect":
		out = connectStreamOutcome(t, resp, respBody)
	default:
		out = grpcOutcome(t, resp, respBody)
	}
	wantStatus := http.StatusOK
	if w.kind == "connect" && !rc.streaming {
		wantStatus = http.StatusBadRequest
	}
	if out.status != wantStatus || out.code != "invalid_argument" {
		t.Fatalf("got HTTP %d, code %q (%q); want HTTP %d, invalid_argument", out.status, out.code, out.message, wantStatus)
	}
	if !strings.Contains(out.message, rc.field) {
		t.Errorf("message %q does not name the field %s that is not UTF-8", out.message, rc.field)
	}
	if !slices.ContainsFunc(out.fields, func(f string) bool { return strings.Contains(f, rc.field) }) {
		t.Errorf("google.rpc.BadRequest names %q, not %s", out.fields, rc.field)
	}
}

// envelope frames msg as Connect streaming, gRPC and gRPC-Web do.
func envelope(flags byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// connectError is the JSON of a Connect error.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"details"`
}

func (e connectError) outcome(status int) rawOutcome {
	out := rawOutcome{status: status, code: e.Code, message: e.Message}
	for _, d := range e.Details {
		if d.Type != "google.rpc.BadRequest" {
			continue
		}
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			continue
		}
		var br errdetails.BadRequest
		if proto.Unmarshal(b, &br) == nil {
			for _, v := range br.GetFieldViolations() {
				out.fields = append(out.fields, v.GetField())
			}
		}
	}
	return out
}

func connectUnaryOutcome(t *testing.T, resp *http.Response, body []byte) rawOutcome {
	t.Helper()
	var e connectError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("HTTP %d with a body that is not a Connect error: %q", resp.StatusCode, body)
	}
	return e.outcome(resp.StatusCode)
}

// connectStreamOutcome reads the end-of-stream message of a Connect stream.
func connectStreamOutcome(t *testing.T, resp *http.Response, body []byte) rawOutcome {
	t.Helper()
	for len(body) >= 5 {
		flags, n := body[0], binary.BigEndian.Uint32(body[1:5])
		if uint32(len(body)-5) < n {
			break
		}
		frame := body[5 : 5+n]
		body = body[5+n:]
		if flags&0x02 == 0 {
			t.Errorf("the stream carried a message before its end: %q", frame)
			continue
		}
		var end struct {
			Error *connectError `json:"error"`
		}
		if err := json.Unmarshal(frame, &end); err != nil || end.Error == nil {
			t.Fatalf("end of stream without an error: %q", frame)
		}
		return end.Error.outcome(resp.StatusCode)
	}
	t.Fatalf("HTTP %d: no end-of-stream message in %q", resp.StatusCode, body)
	return rawOutcome{}
}

// grpcOutcome reads the status of a gRPC or gRPC-Web response: from the
// headers of a trailers-only response, the HTTP trailers, or gRPC-Web's
// trailer frame.
func grpcOutcome(t *testing.T, resp *http.Response, body []byte) rawOutcome {
	t.Helper()
	md := http.Header{}
	for _, h := range []http.Header{resp.Header, resp.Trailer} {
		for k, v := range h {
			md[k] = v
		}
	}
	for len(body) >= 5 {
		flags, n := body[0], binary.BigEndian.Uint32(body[1:5])
		if uint32(len(body)-5) < n {
			break
		}
		frame := body[5 : 5+n]
		body = body[5+n:]
		if flags&0x80 == 0 {
			t.Errorf("the response carried a message: %q", frame)
			continue
		}
		r := bufio.NewReader(bytes.NewReader(append(frame, '\r', '\n')))
		for {
			line, err := r.ReadString('\n')
			line = strings.TrimRight(line, "\r\n")
			if k, v, ok := strings.Cut(line, ":"); ok {
				md.Add(http.CanonicalHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
			}
			if err != nil {
				break
			}
		}
	}
	status := md.Get("Grpc-Status")
	if status == "" {
		t.Fatalf("HTTP %d without grpc-status; headers %v", resp.StatusCode, md)
	}
	code, err := strconv.Atoi(status)
	if err != nil {
		t.Fatalf("grpc-status %q", status)
	}
	out := rawOutcome{status: resp.StatusCode, code: connect.Code(code).String()}
	out.message = md.Get("Grpc-Message")
	if m, err := url.PathUnescape(out.message); err == nil {
		out.message = m
	}
	if bin := md.Get("Grpc-Status-Details-Bin"); bin != "" {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(bin, "="))
		var s spb.Status
		if err == nil && proto.Unmarshal(b, &s) == nil {
			for _, d := range s.GetDetails() {
				var br errdetails.BadRequest
				if d.MessageIs(&br) && d.UnmarshalTo(&br) == nil {
					for _, v := range br.GetFieldViolations() {
						out.fields = append(out.fields, v.GetField())
					}
				}
			}
		}
	}
	return out
}
