package service_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// getItemCacheControl is the Cache-Control a Connect GET response of
// procedure with status must carry, from a kvgate without credentials:
// GetItem's answers (200, 304) may be kept and revalidated, and every
// other GET response, GetItem's failures included, is no-store.
func getItemCacheControl(procedure string, status int) string {
	if procedure == kvv1connect.KVStoreServiceGetItemProcedure && (status == http.StatusOK || status == http.StatusNotModified) {
		return "no-cache"
	}
	return "no-store"
}

// checkGetItemViews reads full, the item at key as a plain GetItem
// returned it (holding value), with ITEM_VIEW_METADATA and with
// if_generation_not_match, matching and not, and, where the client sends
// Connect GET requests (its answer carries an ETag), with If-None-Match.
// A missing key stays NOT_FOUND whatever the view or condition.
func checkGetItemViews(t *testing.T, ctx context.Context, client kvv1connect.KVStoreServiceClient, store, key string, value []byte, full *kvv1.Item) {
	t.Helper()
	if full.Size == nil || full.GetSize() != uint64(len(value)) {
		t.Errorf("GetItem: size %v; want %d, the value's length", full.Size, len(value))
	}
	gen := full.GetGeneration()
	cases := []struct {
		name        string
		req         *kvv1.GetItemRequest
		withValue   bool
		notModified bool
	}{
		{"full view", &kvv1.GetItemRequest{View: kvv1.ItemView_ITEM_VIEW_FULL}, true, false},
		{"metadata view", &kvv1.GetItemRequest{View: kvv1.ItemView_ITEM_VIEW_METADATA}, false, false},
		{"generation held", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen)}, false, true},
		{"generation held, metadata view", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen), View: kvv1.ItemView_ITEM_VIEW_METADATA}, false, true},
		{"other generation held", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen + 1)}, true, false},
		{"other generation held, metadata view", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen + 1), View: kvv1.ItemView_ITEM_VIEW_METADATA}, false, false},
	}
	for _, tc := range cases {
		req := proto.CloneOf(tc.req)
		req.StoreId, req.Key = store, key
		res, err := client.GetItem(ctx, req)
		mustOK(t, "GetItem "+tc.name, err)
		got := res.GetItem()
		want := proto.CloneOf(full)
		if !tc.withValue {
			want.Value = nil
		}
		if !proto.Equal(got, want) || res.GetNotModified() != tc.notModified {
			t.Errorf("GetItem %s = %d value bytes, size %v, not_modified %t, item %v; want %d value bytes, size %d, not_modified %t, the item otherwise as a full read",
				tc.name, len(got.GetValue()), got.Size, res.GetNotModified(), withoutValue(got), len(want.GetValue()), len(value), tc.notModified)
		}
	}

	// If-None-Match is honoured on Connect GET requests only.
	hctx, info := connect.NewClientContext(ctx)
	_, err := client.GetItem(hctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
	mustOK(t, "GetItem for its ETag", err)
	etag := info.ResponseHeader().Get("ETag")
	cctx, cinfo := connect.NewClientContext(ctx)
	cinfo.RequestHeader().Set("If-None-Match", `"`+strconv.FormatUint(gen, 10)+`"`)
	res, err := client.GetItem(cctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
	switch {
	case etag != "":
		if etag != `"`+strconv.FormatUint(gen, 10)+`"` {
			t.Errorf("Connect GET: ETag %s; want the generation %d, quoted", etag, gen)
		}
		if !connecthttp.IsNotModifiedError(err) || cinfo.ResponseHeader().Get("ETag") != etag {
			t.Errorf("Connect GET with If-None-Match %s: %v, ETag %q; want 304 Not Modified with the ETag", etag, err, cinfo.ResponseHeader().Get("ETag"))
		}
	case err != nil || !bytes.Equal(res.GetItem().GetValue(), value) || res.GetNotModified():
		t.Errorf("POST with If-None-Match: %v, %d value bytes, not_modified %t; want the whole item: only a GET is conditional on the header",
			err, len(res.GetItem().GetValue()), res.GetNotModified())
	}

	for _, req := range []*kvv1.GetItemRequest{
		{View: kvv1.ItemView_ITEM_VIEW_METADATA},
		{IfGenerationNotMatch: proto.Uint64(gen)},
	} {
		req.StoreId, req.Key = store, key+"-missing"
		_, err := client.GetItem(ctx, req)
		testutil.WantCode(t, fmt.Sprintf("GetItem of a missing key (%v)", req), err, connect.CodeNotFound)
	}
}

func withoutValue(it *kvv1.Item) *kvv1.Item {
	out := proto.CloneOf(it)
	out.Value = nil
	return out
}

// getItemCorpusCases are GetItem's invalid requests for the bad-input
// corpus. A view outside the enum is invalid; if_generation_not_match
// goes with any view, so no combination of the two is.
func getItemCorpusCases() []corpusCase {
	var cases []corpusCase
	get := func(req *kvv1.GetItemRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return unaryCall(kvv1connect.KVStoreServiceClient.GetItem, req)
	}
	for _, v := range []kvv1.ItemView{3, 99, -1} {
		cases = append(cases, corpusCase{rpc: "GetItem", category: "enum", name: fmt.Sprintf("view %d", v),
			call: get(&kvv1.GetItemRequest{StoreId: corpusStore, Key: "k", View: v}), fields: []string{"view"}})
		cases = append(cases, corpusCase{rpc: "GetItem", category: "enum", name: fmt.Sprintf("view %d with a generation held", v),
			call:   get(&kvv1.GetItemRequest{StoreId: corpusStore, Key: "k", View: v, IfGenerationNotMatch: proto.Uint64(1)}),
			fields: []string{"view"}})
	}
	cases = append(cases, corpusCase{rpc: "GetItem", category: "multiple", name: "store id, key and view",
		call:   get(&kvv1.GetItemRequest{Key: "a|b", View: 7, IfGenerationNotMatch: proto.Uint64(0)}),
		fields: []string{"store_id", "key", "view"}})
	return cases
}

// upstreamReads counts the item GETs and HEADs the local store received.
type upstreamReads struct{ gets, heads int64 }

func readsOf(s *localstore.Store) upstreamReads {
	return upstreamReads{gets: s.Count(localstore.RequestGet), heads: s.Count(localstore.RequestHead)}
}

// getItemWire is a GetItem request or answer as Connect JSON carries it.
type getItemWire struct {
	Item *struct {
		Key, Value, Metadata, Generation, Size string
	} `json:"item"`
	NotModified bool `json:"notModified"`
}

// TestGetItemConditionalHTTP sends GetItem as raw Connect GET requests
// (and POSTs, for contrast) and checks the HTTP caching contract: the
// ETag, If-None-Match in its forms answered 304 with no body after a HEAD
// alone, a 200 once the item changed, the Cache-Control of each answer,
// and the upstream requests each one cost.
func TestGetItemConditionalHTTP(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	hc := kvtest.HTTP1Client()
	const store, key = "cond", "doc"
	value := bytes.Repeat([]byte("v"), 64<<10)
	put := func(v []byte) uint64 {
		t.Helper()
		if err := st.Client.PutItem(t.Context(), store, key, v, upstream.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := st.Client.HeadItem(t.Context(), store, key)
		if err != nil {
			t.Fatal(err)
		}
		return it.Generation
	}
	gen := put(value)
	etag := `"` + strconv.FormatUint(gen, 10) + `"`

	getURL := func(req *kvv1.GetItemRequest) string {
		msg, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return st.URL + kvv1connect.KVStoreServiceGetItemProcedure + "?connect=v1&encoding=json&message=" + url.QueryEscape(string(msg))
	}
	plain := getURL(&kvv1.GetItemRequest{StoreId: store, Key: key})

	type answer struct {
		status int
		header http.Header
		body   []byte
		msg    getItemWire
		reads  upstreamReads
	}
	send := func(method, target, body string, header http.Header) answer {
		t.Helper()
		before := readsOf(st.Store)
		req, err := http.NewRequestWithContext(t.Context(), method, target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Connect-Protocol-Version", "1")
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		a := answer{status: resp.StatusCode, header: resp.Header, body: b}
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &a.msg); err != nil {
				t.Fatalf("%s: body %q: %v", method, b, err)
			}
		}
		after := readsOf(st.Store)
		a.reads = upstreamReads{gets: after.gets - before.gets, heads: after.heads - before.heads}
		return a
	}
	inm := func(v string) http.Header { return http.Header{"If-None-Match": {v}} }

	first := send(http.MethodGet, plain, "", nil)
	if first.status != http.StatusOK || first.header.Get("ETag") != etag || first.msg.Item == nil ||
		first.msg.Item.Size != strconv.Itoa(len(value)) || first.msg.Item.Value == "" {
		t.Fatalf("GET: status %d, ETag %q, body %.100q; want 200, ETag %s and the item with its size", first.status, first.header.Get("ETag"), first.body, etag)
	}
	if first.reads != (upstreamReads{gets: 1}) {
		t.Errorf("GET: upstream %+v; want one GET", first.reads)
	}

	// Every form of If-None-Match that names the current generation.
	for _, v := range []string{etag, "W/" + etag, `"1", ` + etag, `"x,y", W/"2",` + etag, "*"} {
		a := send(http.MethodGet, plain, "", inm(v))
		if a.status != http.StatusNotModified || a.header.Get("ETag") != etag || len(a.body) != 0 {
			t.Errorf("If-None-Match %s: status %d, ETag %q, %d body bytes; want 304, ETag %s, no body", v, a.status, a.header.Get("ETag"), len(a.body), etag)
		}
		if got := a.header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("If-None-Match %s: Cache-Control %q; want no-cache", v, got)
		}
		if a.reads != (upstreamReads{heads: 1}) {
			t.Errorf("If-None-Match %s: upstream %+v; want one HEAD and no GET: the value must not move", v, a.reads)
		}
	}

	// Tags that name no current generation: the item is read.
	for _, v := range []string{`"` + strconv.FormatUint(gen+1, 10) + `"`, `"0` + strconv.FormatUint(gen, 10) + `"`, strconv.FormatUint(gen, 10)} {
		a := send(http.MethodGet, plain, "", inm(v))
		if a.status != http.StatusOK || a.msg.Item == nil || a.msg.Item.Value == "" || a.msg.NotModified {
			t.Errorf("If-None-Match %s: status %d, body %.100q; want 200 with the item", v, a.status, a.body)
		}
	}

	// A POST is never conditional on the header.
	body, err := protojson.Marshal(&kvv1.GetItemRequest{StoreId: store, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	post := send(http.MethodPost, st.URL+kvv1connect.KVStoreServiceGetItemProcedure, string(body), inm(etag))
	if post.status != http.StatusOK || post.msg.Item == nil || post.msg.Item.Value == "" || post.reads != (upstreamReads{gets: 1}) {
		t.Errorf("POST with If-None-Match: status %d, upstream %+v; want 200 with the value after one GET", post.status, post.reads)
	}
	if post.header.Get("ETag") != "" {
		t.Errorf("POST: ETag %q; want none", post.header.Get("ETag"))
	}

	// The metadata view and if_generation_not_match over GET.
	meta := send(http.MethodGet, getURL(&kvv1.GetItemRequest{StoreId: store, Key: key, View: kvv1.ItemView_ITEM_VIEW_METADATA}), "", nil)
	if meta.status != http.StatusOK || meta.msg.Item == nil || meta.msg.Item.Value != "" || meta.msg.Item.Size != strconv.Itoa(len(value)) ||
		meta.header.Get("ETag") != etag || meta.reads != (upstreamReads{heads: 1}) {
		t.Errorf("GET metadata view: status %d, ETag %q, upstream %+v, body %q; want 200 with the size and no value after one HEAD",
			meta.status, meta.header.Get("ETag"), meta.reads, meta.body)
	}
	held := send(http.MethodGet, getURL(&kvv1.GetItemRequest{StoreId: store, Key: key, IfGenerationNotMatch: proto.Uint64(gen)}), "", nil)
	if held.status != http.StatusOK || !held.msg.NotModified || held.msg.Item == nil || held.msg.Item.Value != "" ||
		held.header.Get("ETag") != etag || held.reads != (upstreamReads{heads: 1}) {
		t.Errorf("GET with if_generation_not_match: status %d, ETag %q, upstream %+v, body %q; want 200, not_modified and no value after one HEAD",
			held.status, held.header.Get("ETag"), held.reads, held.body)
	}

	// Once the item changes, the old tag gets the new item.
	gen2 := put([]byte("changed"))
	changed := send(http.MethodGet, plain, "", inm(etag))
	etag2 := `"` + strconv.FormatUint(gen2, 10) + `"`
	if changed.status != http.StatusOK || changed.header.Get("ETag") != etag2 || changed.msg.Item == nil ||
		changed.msg.Item.Value != "Y2hhbmdlZA==" || changed.reads != (upstreamReads{gets: 1, heads: 1}) {
		t.Errorf("If-None-Match %s after a write: status %d, ETag %q, upstream %+v, body %q; want 200, ETag %s and the new value after a HEAD and a GET",
			etag, changed.status, changed.header.Get("ETag"), changed.reads, changed.body, etag2)
	}

	// A missing item stays NOT_FOUND, uncacheable, whatever the header.
	missing := send(http.MethodGet, getURL(&kvv1.GetItemRequest{StoreId: store, Key: "missing"}), "", inm("*"))
	if missing.status != http.StatusNotFound || missing.header.Get("ETag") != "" || missing.header.Get("Cache-Control") != "no-store" {
		t.Errorf("If-None-Match * on a missing key: status %d, ETag %q, Cache-Control %q; want 404, no ETag, no-store",
			missing.status, missing.header.Get("ETag"), missing.header.Get("Cache-Control"))
	}

	// Cache-Control of each kind of GET answer.
	list := st.URL + kvv1connect.KVStoreServiceListKeysProcedure + "?connect=v1&encoding=json&message=" + url.QueryEscape(`{"storeId":"cond"}`)
	invalid := getURL(&kvv1.GetItemRequest{StoreId: store, Key: "bad|key"})
	for _, c := range []struct {
		name, target string
		status       int
	}{
		{"GetItem", plain, http.StatusOK},
		{"GetItem metadata view", getURL(&kvv1.GetItemRequest{StoreId: store, Key: key, View: kvv1.ItemView_ITEM_VIEW_METADATA}), http.StatusOK},
		{"GetItem invalid", invalid, http.StatusBadRequest},
		{"ListKeys", list, http.StatusOK},
	} {
		a := send(http.MethodGet, c.target, "", nil)
		procedure, _, _ := strings.Cut(strings.TrimPrefix(c.target, st.URL), "?")
		want := getItemCacheControl(procedure, a.status)
		if a.status != c.status || a.header.Values("Cache-Control") == nil || !slices.Equal(a.header.Values("Cache-Control"), []string{want}) {
			t.Errorf("%s: status %d, Cache-Control %q; want %d and exactly %q", c.name, a.status, a.header.Values("Cache-Control"), c.status, want)
		}
	}
}

// TestGetItemPrivateWithCredentials checks that a kvgate that checks
// credentials marks GetItem's cacheable answers private, so that shared
// caches keep none.
func TestGetItemPrivateWithCredentials(t *testing.T) {
	t.Parallel()
	st := startWithToken(t)
	if err := st.Client.PutItem(t.Context(), "priv", "k", []byte("v"), upstream.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	target := st.URL + kvv1connect.KVStoreServiceGetItemProcedure + "?connect=v1&encoding=json&message=" + url.QueryEscape(`{"storeId":"priv","key":"k"}`)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+privateToken)
	resp, err := kvtest.HTTP1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "private, no-cache" || resp.Header.Get("ETag") == "" {
		t.Errorf("status %d, Cache-Control %q, ETag %q; want 200, private, no-cache and an ETag",
			resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
	}
}

// privateToken is the bearer token startWithToken's kvgate accepts.
const privateToken = "kvg-test-get-item-private-41c7"

// startWithToken starts kvgate with a token file holding privateToken,
// allowed to read every store.
func startWithToken(t *testing.T) *kvtest.Stack {
	t.Helper()
	sum := sha256.Sum256([]byte(privateToken))
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	file := fmt.Sprintf("tokens:\n  - name: reader\n    sha256: %q\n    stores: [\"*\"]\n    allow: [read]\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	return kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path}})
}
