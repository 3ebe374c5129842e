package gofastly_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastly/go-fastly/v16/fastly"
)

// item is what GetKVStoreItem reports of a key.
type item struct {
	value, metadata string
	generation      uint64
}

// getItem reads a key with GetKVStoreItem, which reports the metadata and
// generation as well as the value.
func getItem(t *testing.T, c *fastly.Client, storeID, key string) (item, error) {
	t.Helper()
	out, err := c.GetKVStoreItem(context.Background(), &fastly.GetKVStoreItemInput{StoreID: storeID, Key: key})
	if err != nil {
		return item{}, err
	}
	v, err := out.ValueAsString()
	if err != nil {
		t.Fatal(err)
	}
	return item{value: v, metadata: out.Metadata, generation: out.Generation}, nil
}

func mustGetItem(t *testing.T, c *fastly.Client, storeID, key string) item {
	t.Helper()
	it, err := getItem(t, c, storeID, key)
	if err != nil {
		t.Fatalf("GetKVStoreItem(%q): %v", key, err)
	}
	return it
}

func put(t *testing.T, c *fastly.Client, in *fastly.InsertKVStoreKeyInput) {
	t.Helper()
	if err := c.InsertKVStoreKey(context.Background(), in); err != nil {
		t.Fatalf("InsertKVStoreKey(%q): %v", in.Key, err)
	}
}

func ptr(s string) *string { return &s }

func newStore(t *testing.T, c *fastly.Client) string {
	t.Helper()
	s, err := c.CreateKVStore(context.Background(), &fastly.CreateKVStoreInput{Name: "items"})
	if err != nil {
		t.Fatal(err)
	}
	return s.StoreID
}

func TestInsertKVStoreKey(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	const stale = 1 // a generation no write ever has
	for _, tc := range []struct {
		name string
		// prior, when set, is written first with metadata "old".
		prior string
		in    fastly.InsertKVStoreKeyInput
		// matchGeneration sets IfGenerationMatch to the prior write's.
		matchGeneration bool
		status          int
		wantValue       string
		wantMetadata    string
	}{
		{name: "new key", in: fastly.InsertKVStoreKeyInput{Value: "v"}, wantValue: "v"},
		{name: "empty value", in: fastly.InsertKVStoreKeyInput{}, wantValue: ""},
		{name: "body", in: fastly.InsertKVStoreKeyInput{Body: bytes.NewReader([]byte("from a reader")), Value: "ignored"}, wantValue: "from a reader"},
		{name: "metadata", in: fastly.InsertKVStoreKeyInput{Value: "v", Metadata: ptr(`{"a":1}`)}, wantValue: "v", wantMetadata: `{"a":1}`},
		{name: "overwrite clears metadata", prior: "old", in: fastly.InsertKVStoreKeyInput{Value: "new"}, wantValue: "new"},
		{name: "overwrite with empty metadata", prior: "old", in: fastly.InsertKVStoreKeyInput{Value: "new", Metadata: ptr("")}, wantValue: "new"},
		{name: "overwrite with metadata", prior: "old", in: fastly.InsertKVStoreKeyInput{Value: "new", Metadata: ptr("m2")}, wantValue: "new", wantMetadata: "m2"},
		{name: "add new key", in: fastly.InsertKVStoreKeyInput{Value: "v", Add: true}, wantValue: "v"},
		{name: "add existing key", prior: "old", in: fastly.InsertKVStoreKeyInput{Value: "v", Add: true}, status: http.StatusPreconditionFailed, wantValue: "old", wantMetadata: "old"},
		{name: "append", prior: "ab", in: fastly.InsertKVStoreKeyInput{Value: "cd", Append: true}, wantValue: "abcd"},
		{name: "append creates", in: fastly.InsertKVStoreKeyInput{Value: "cd", Append: true}, wantValue: "cd"},
		{name: "prepend", prior: "ab", in: fastly.InsertKVStoreKeyInput{Value: "cd", Prepend: true, Metadata: ptr("p")}, wantValue: "cdab", wantMetadata: "p"},
		{name: "prepend creates", in: fastly.InsertKVStoreKeyInput{Value: "cd", Prepend: true}, wantValue: "cd"},
		{name: "add and append", in: fastly.InsertKVStoreKeyInput{Value: "v", Add: true, Append: true}, status: http.StatusBadRequest},
		{name: "background fetch", prior: "old", in: fastly.InsertKVStoreKeyInput{Value: "v", BackgroundFetch: true}, wantValue: "v"},
		{name: "generation matches", prior: "old", matchGeneration: true, in: fastly.InsertKVStoreKeyInput{Value: "v"}, wantValue: "v"},
		{name: "generation differs", prior: "old", in: fastly.InsertKVStoreKeyInput{Value: "v", IfGenerationMatch: stale}, status: http.StatusPreconditionFailed, wantValue: "old", wantMetadata: "old"},
		{name: "generation of a missing key", in: fastly.InsertKVStoreKeyInput{Value: "v", IfGenerationMatch: stale}, status: http.StatusPreconditionFailed},
		{name: "append with matching generation", prior: "ab", matchGeneration: true, in: fastly.InsertKVStoreKeyInput{Value: "cd", Append: true}, wantValue: "abcd"},
		{name: "metadata too long", in: fastly.InsertKVStoreKeyInput{Value: "v", Metadata: ptr(strings.Repeat("m", 2001))}, status: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := tc.in
			in.StoreID, in.Key = storeID, "insert/"+tc.name
			var before item
			if tc.prior != "" {
				put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: in.Key, Value: tc.prior, Metadata: ptr("old")})
				before = mustGetItem(t, c, storeID, in.Key)
				if tc.matchGeneration {
					in.IfGenerationMatch = before.generation
				}
			}
			wantStatus(t, c.InsertKVStoreKey(context.Background(), &in), tc.status)
			got, err := getItem(t, c, storeID, in.Key)
			if tc.status != 0 && tc.prior == "" {
				// A refused write leaves a missing key missing.
				wantStatus(t, err, http.StatusNotFound)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.value != tc.wantValue || got.metadata != tc.wantMetadata {
				t.Errorf("got value %q metadata %q, want %q and %q", got.value, got.metadata, tc.wantValue, tc.wantMetadata)
			}
			switch {
			case tc.status != 0 && got.generation != before.generation:
				t.Errorf("a refused write changed the generation from %d to %d", before.generation, got.generation)
			case tc.status == 0 && got.generation <= before.generation:
				t.Errorf("generation %d after a write, want more than %d", got.generation, before.generation)
			}
		})
	}
}

func TestInsertKVStoreKeyMissingFields(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := context.Background()
	// go-fastly refuses these before sending anything.
	for _, tc := range []struct {
		name string
		in   fastly.InsertKVStoreKeyInput
		want error
	}{
		{name: "no store", in: fastly.InsertKVStoreKeyInput{Key: "k"}, want: fastly.ErrMissingStoreID},
		{name: "no key", in: fastly.InsertKVStoreKeyInput{StoreID: "s"}, want: fastly.ErrMissingKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := c.InsertKVStoreKey(ctx, &tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestGenerationsIncrease(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	var last uint64
	for i, in := range []fastly.InsertKVStoreKeyInput{
		{Value: "a"},
		{Value: "b", Append: true},
		{Value: "c", Prepend: true},
		{Value: "d", Metadata: ptr("m")},
		{Value: "e", BackgroundFetch: true},
		{Value: "f", TimeToLiveSec: 60},
	} {
		in.StoreID, in.Key = storeID, "gen"
		put(t, c, &in)
		got := mustGetItem(t, c, storeID, "gen")
		if got.generation <= last {
			t.Fatalf("write %d: generation %d, want more than %d", i, got.generation, last)
		}
		last = got.generation
	}
	if got := mustGetItem(t, c, storeID, "gen"); got.value != "f" {
		t.Errorf("value %q, want %q", got.value, "f")
	}
}

func TestInsertKVStoreKeyTimeToLive(t *testing.T) {
	t.Parallel()
	c, clk := newClient(t)
	storeID := newStore(t, c)
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "short", Value: "v", TimeToLiveSec: 60})
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "long", Value: "v", TimeToLiveSec: 3600})
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "forever", Value: "v"})

	listed := func() []string {
		t.Helper()
		out, err := c.ListKVStoreKeys(context.Background(), &fastly.ListKVStoreKeysInput{StoreID: storeID})
		if err != nil {
			t.Fatal(err)
		}
		return out.Data
	}
	clk.Advance(59 * time.Second)
	if got := mustGetItem(t, c, storeID, "short"); got.value != "v" {
		t.Fatalf("before expiry: value %q", got.value)
	}
	clk.Advance(2 * time.Second)
	_, err := c.GetKVStoreKey(context.Background(), &fastly.GetKVStoreKeyInput{StoreID: storeID, Key: "short"})
	wantStatus(t, err, http.StatusNotFound)
	if got, want := listed(), []string{"forever", "long"}; !slices.Equal(got, want) {
		t.Errorf("listed %v after the short TTL, want %v", got, want)
	}
	clk.Advance(time.Hour)
	if got, want := listed(), []string{"forever"}; !slices.Equal(got, want) {
		t.Errorf("listed %v after the long TTL, want %v", got, want)
	}
}

func TestGetKVStoreKey(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	binary := string([]byte{0, 1, 2, 0xff, '\n'})
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "text", Value: "hello", Metadata: ptr("m")})
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "binary", Value: binary})
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "empty", Value: ""})
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "a key/with spaces & ünïcode", Value: "odd"})
	for _, tc := range []struct {
		key, want, metadata string
		status              int
	}{
		{key: "text", want: "hello", metadata: "m"},
		{key: "binary", want: binary},
		{key: "empty", want: ""},
		{key: "a key/with spaces & ünïcode", want: "odd"},
		{key: "missing", status: http.StatusNotFound},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			got, err := c.GetKVStoreKey(context.Background(), &fastly.GetKVStoreKeyInput{StoreID: storeID, Key: tc.key})
			wantStatus(t, err, tc.status)
			if got != tc.want {
				t.Errorf("GetKVStoreKey = %q, want %q", got, tc.want)
			}
			it, err := getItem(t, c, storeID, tc.key)
			wantStatus(t, err, tc.status)
			if tc.status != 0 {
				return
			}
			if it.value != tc.want || it.metadata != tc.metadata || it.generation == 0 {
				t.Errorf("GetKVStoreItem = %+v, want value %q, metadata %q and a generation", it, tc.want, tc.metadata)
			}
		})
	}
}

func TestListKVStoreKeys(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := context.Background()
	storeID := newStore(t, c)
	keys := []string{"a-1", "a-2", "a-3", "a-4", "a-5", "b-1", "b-2", "c"}
	for _, k := range keys {
		put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: k, Value: k})
	}
	// cursor is where a limit-2 listing of the a- keys stops; a prefix
	// query cannot hold "/", as on Fastly.
	first, err := c.ListKVStoreKeys(ctx, &fastly.ListKVStoreKeysInput{StoreID: storeID, Prefix: "a-", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	cursor := first.Meta["next_cursor"]
	if cursor == "" {
		t.Fatalf("a limit-2 listing of 5 keys has no next_cursor: %v", first.Meta)
	}
	for _, tc := range []struct {
		name       string
		in         fastly.ListKVStoreKeysInput
		want       []string
		wantMore   bool
		wantLimit  string
		wantPrefix string
		wantConsis string
		status     int
	}{
		{name: "all", want: keys, wantLimit: "1000"},
		{name: "prefix", in: fastly.ListKVStoreKeysInput{Prefix: "b-"}, want: []string{"b-1", "b-2"}, wantLimit: "1000", wantPrefix: "b-"},
		{name: "prefix matching nothing", in: fastly.ListKVStoreKeysInput{Prefix: "z"}, want: []string{}, wantLimit: "1000", wantPrefix: "z"},
		{name: "limit", in: fastly.ListKVStoreKeysInput{Limit: 3}, want: keys[:3], wantMore: true, wantLimit: "3"},
		{name: "limit of all", in: fastly.ListKVStoreKeysInput{Limit: len(keys)}, want: keys, wantLimit: "8"},
		{name: "prefix and limit", in: fastly.ListKVStoreKeysInput{Prefix: "a-", Limit: 2}, want: []string{"a-1", "a-2"}, wantMore: true, wantLimit: "2", wantPrefix: "a-"},
		{name: "cursor", in: fastly.ListKVStoreKeysInput{Prefix: "a-", Limit: 2, Cursor: cursor}, want: []string{"a-3", "a-4"}, wantMore: true, wantLimit: "2", wantPrefix: "a-"},
		{name: "cursor without limit", in: fastly.ListKVStoreKeysInput{Prefix: "a-", Cursor: cursor}, want: []string{"a-3", "a-4", "a-5"}, wantLimit: "1000", wantPrefix: "a-"},
		{name: "eventual", in: fastly.ListKVStoreKeysInput{Consistency: fastly.ConsistencyEventual}, want: keys, wantLimit: "1000", wantConsis: "eventual"},
		{name: "strong", in: fastly.ListKVStoreKeysInput{Consistency: fastly.ConsistencyStrong, Prefix: "c"}, want: []string{"c"}, wantLimit: "1000", wantPrefix: "c"},
		{name: "negative limit", in: fastly.ListKVStoreKeysInput{Limit: -1}, status: http.StatusBadRequest},
		{name: "bad cursor", in: fastly.ListKVStoreKeysInput{Cursor: "not a cursor"}, status: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := tc.in
			in.StoreID = storeID
			out, err := c.ListKVStoreKeys(ctx, &in)
			wantStatus(t, err, tc.status)
			if tc.status != 0 {
				return
			}
			if !slices.Equal(out.Data, tc.want) {
				t.Errorf("keys %v, want %v", out.Data, tc.want)
			}
			if more := out.Meta["next_cursor"] != ""; more != tc.wantMore {
				t.Errorf("next_cursor %q, want one: %v", out.Meta["next_cursor"], tc.wantMore)
			}
			if out.Meta["limit"] != tc.wantLimit || out.Meta["prefix"] != tc.wantPrefix || out.Meta["consistency"] != tc.wantConsis {
				t.Errorf("Meta = %v, want limit %q, prefix %q, consistency %q", out.Meta, tc.wantLimit, tc.wantPrefix, tc.wantConsis)
			}
		})
	}
}

func TestListKVStoreKeysPaginator(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("page-%02d", i)
		want = append(want, k)
		put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: k, Value: "v"})
	}
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "other", Value: "v"})
	for _, tc := range []struct {
		limit int
		sizes []int
	}{
		{limit: 3, sizes: []int{3, 3, 3, 1}},
		{limit: 5, sizes: []int{5, 5}},
		{limit: 0, sizes: []int{10}},
	} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			t.Parallel()
			p := c.NewListKVStoreKeysPaginator(context.Background(), &fastly.ListKVStoreKeysInput{
				StoreID: storeID, Prefix: "page-", Limit: tc.limit, Consistency: fastly.ConsistencyStrong,
			})
			var got []string
			var sizes []int
			for p.Next() {
				sizes = append(sizes, len(p.Keys()))
				got = append(got, p.Keys()...)
			}
			if err := p.Err(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) || !slices.Equal(sizes, tc.sizes) {
				t.Errorf("pages of %v listing %v, want pages of %v listing %v", sizes, got, tc.sizes, want)
			}
		})
	}
}

func TestListKVStoreKeysPaginatorWhileWriting(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	for _, k := range []string{"b", "d", "f"} {
		put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: k, Value: "v"})
	}
	p := c.NewListKVStoreKeysPaginator(context.Background(), &fastly.ListKVStoreKeysInput{StoreID: storeID, Limit: 2})
	var got []string
	for i := 0; p.Next(); i++ {
		got = append(got, p.Keys()...)
		if i == 0 {
			// The cursor names the last key listed, so a key written
			// behind it is not listed and one ahead of it is.
			put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "a", Value: "v"})
			put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "e", Value: "v"})
		}
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"b", "d", "e", "f"}; !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
}

func TestDeleteKVStoreKey(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	for _, tc := range []struct {
		name            string
		exists          bool
		force           bool
		matchGeneration bool
		staleGeneration bool
		status          int
	}{
		{name: "existing", exists: true},
		{name: "missing", status: http.StatusNotFound},
		{name: "missing with force", force: true},
		{name: "existing with force", exists: true, force: true},
		{name: "generation matches", exists: true, matchGeneration: true},
		{name: "generation differs", exists: true, staleGeneration: true, status: http.StatusPreconditionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := "delete/" + tc.name
			in := &fastly.DeleteKVStoreKeyInput{StoreID: storeID, Key: key, Force: tc.force}
			if tc.exists {
				put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: key, Value: "v"})
				gen := mustGetItem(t, c, storeID, key).generation
				switch {
				case tc.matchGeneration:
					in.IfGenerationMatch = gen
				case tc.staleGeneration:
					in.IfGenerationMatch = gen - 1
				}
			}
			wantStatus(t, c.DeleteKVStoreKey(context.Background(), in), tc.status)
			_, err := getItem(t, c, storeID, key)
			if tc.status == http.StatusPreconditionFailed {
				wantStatus(t, err, 0) // still there
				return
			}
			wantStatus(t, err, http.StatusNotFound)
		})
	}
}

// ndjson builds a batch body, one JSON object a line, values base64.
func ndjson(lines ...string) string {
	return strings.Join(lines, "\n") + "\n"
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestBatchModifyKVStoreKey(t *testing.T) {
	t.Parallel()
	c, clk := newClient(t)
	ctx := context.Background()
	storeID := newStore(t, c)
	put(t, c, &fastly.InsertKVStoreKeyInput{StoreID: storeID, Key: "replaced", Value: "old", Metadata: ptr("old")})
	before := mustGetItem(t, c, storeID, "replaced")

	body := ndjson(
		fmt.Sprintf(`{"key":"one","value":%q}`, b64("first")),
		fmt.Sprintf(`{"key":"two","value":%q,"metadata":"m2"}`, b64("second")),
		fmt.Sprintf(`{"key":"brief","value":%q,"time_to_live_sec":60}`, b64("short-lived")),
		fmt.Sprintf(`{"key":"replaced","value":%q,"background_fetch":true}`, b64("new")),
		fmt.Sprintf(`{"key":"binary","value":%q}`, b64("\x00\xff")),
	)
	err := c.BatchModifyKVStoreKey(ctx, &fastly.BatchModifyKVStoreKeyInput{StoreID: storeID, Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ key, value, metadata string }{
		{"one", "first", ""},
		{"two", "second", "m2"},
		{"brief", "short-lived", ""},
		{"replaced", "new", ""},
		{"binary", "\x00\xff", ""},
	} {
		got := mustGetItem(t, c, storeID, want.key)
		if got.value != want.value || got.metadata != want.metadata || got.generation == 0 {
			t.Errorf("%s: %+v, want value %q, metadata %q and a generation", want.key, got, want.value, want.metadata)
		}
	}
	if got := mustGetItem(t, c, storeID, "replaced"); got.generation <= before.generation {
		t.Errorf("replaced: generation %d, want more than %d", got.generation, before.generation)
	}
	clk.Advance(61 * time.Second)
	_, err = getItem(t, c, storeID, "brief")
	wantStatus(t, err, http.StatusNotFound)
}

func TestBatchModifyKVStoreKeyBadLine(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	storeID := newStore(t, c)
	for _, tc := range []struct {
		name, bad string
		wantKey   string
	}{
		{name: "value not base64", bad: `{"key":"bad","value":"%%%"}`, wantKey: "bad"},
		{name: "missing value", bad: `{"key":"bad"}`, wantKey: "bad"},
		{name: "missing key", bad: fmt.Sprintf(`{"value":%q}`, b64("v"))},
		{name: "not JSON", bad: `key=bad`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			good := "good/" + tc.name
			body := ndjson(fmt.Sprintf(`{"key":%q,"value":%q}`, good, b64("v")), tc.bad)
			err := c.BatchModifyKVStoreKey(context.Background(), &fastly.BatchModifyKVStoreKeyInput{StoreID: storeID, Body: strings.NewReader(body)})
			wantStatus(t, err, http.StatusBadRequest)
			var httpErr *fastly.HTTPError
			errors.As(err, &httpErr)
			// go-fastly turns each of Fastly's per-line errors into one of
			// its own, titled with the line's index.
			if len(httpErr.Errors) != 1 {
				t.Fatalf("%d errors, want 1: %v", len(httpErr.Errors), err)
			}
			if e := httpErr.Errors[0]; e.Title != "error at index: 1" || e.Detail == "" {
				t.Errorf("error %+v, want one titled %q with a reason", e, "error at index: 1")
			}
			// The local store applies no line of a batch with a bad one.
			_, getErr := getItem(t, c, storeID, good)
			wantStatus(t, getErr, http.StatusNotFound)
		})
	}
}
