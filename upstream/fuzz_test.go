package upstream_test

// Native fuzz targets for the upstream package's pure functions: the key
// and metadata rules, the list and batch response parsers, and the batch
// line encoder. Their seed corpora (the f.Add calls below and any files
// under testdata/fuzz/) run as plain tests in every `go test`; run one for
// a while with
//
//	go test -run '^$' -fuzz '^FuzzCheckKey$' -fuzztime 30s ./upstream/
//
// or all of them with scripts/fuzz.sh. Every helper here starts with "fz"
// so as not to clash with the package's other tests.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
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

// fzKeyForbidden are the bytes Fastly refuses anywhere in a key.
const fzKeyForbidden = "\r\n#;?^|"

// fzPrefixQueryForbidden are the bytes Fastly refuses in a list prefix
// query, as its API reference lists them.
const fzPrefixQueryForbidden = "!\"$%&()*+,/:<=>@[]`{}"

// fzKeySeeds are keys at and around every rule's edge.
func fzKeySeeds() []string {
	seeds := []string{
		"", "a", "users/42", "a:b", "x*", "[k]", "ключ", "日本語/キー", "🙂", "!",
		"\x7f", "\u00a0", "\x01a", "a b", "a.b", ".a", "a..b", "a/", "a//b",
		".", "..", "a/./b", "../x", "./x", "a/../b", "a/.", "a/..", "a./b", "/.",
		".well-known/acme-challenge", ".well-known/acme-challenge/x",
		".well-known/acme-challeng", ".well-known/other", "x/.well-known/acme-challenge/y",
		"\xff", "a\xffb", "a\xd0", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		" ", "\x00", "\t", "\x1f", "\x20a", "\uFFFE", "\uFFFF", "\uFFFD", "\U0010FFFF",
		"100%+x", "a/b:c=d", "ключ*", "x=", "/x",
		strings.Repeat("k", upstream.MaxKeyBytes),
		strings.Repeat("k", upstream.MaxKeyBytes+1),
		strings.Repeat("é", upstream.MaxKeyBytes/2),
		strings.Repeat("é", upstream.MaxKeyBytes/2+1),
		// 1023 bytes and a two-byte rune: 1025 bytes, cut mid-rune at 1024.
		strings.Repeat("k", upstream.MaxKeyBytes-1) + "é",
		strings.Repeat("k", upstream.MaxKeyBytes-2) + "é",
	}
	for _, c := range fzKeyForbidden {
		seeds = append(seeds, "a"+string(c)+"b", string(c))
	}
	for _, c := range fzPrefixQueryForbidden {
		seeds = append(seeds, "ab"+string(c)+"cd")
	}
	return seeds
}

// fzKeyViolation names the first of Fastly's key rules, as CheckKey's doc
// states them, that key breaks, or "" when it breaks none.
func fzKeyViolation(key string) string {
	switch {
	case len(key) == 0:
		return "empty"
	case len(key) > upstream.MaxKeyBytes:
		return "too long"
	case !utf8.ValidString(key):
		return "not UTF-8"
	case key == "." || key == "..":
		return "dot name"
	case strings.Contains(key, "./"):
		return `contains "./"`
	case strings.HasSuffix(key, "/.") || strings.HasSuffix(key, "/.."):
		return "trailing dot segment"
	case strings.HasPrefix(key, ".well-known/acme-challenge"):
		return "acme challenge"
	case strings.ContainsAny(key, fzKeyForbidden):
		return "forbidden character"
	}
	if r, n := utf8.DecodeRuneInString(key); n == len(key) && (r <= ' ' || r == 0xFFFE || r == 0xFFFF) {
		return "single control character, space or non-character"
	}
	return ""
}

// FuzzCheckKey checks that CheckKey never panics and accepts exactly the
// keys its documented rules allow, that every UTF-8 prefix of an accepted
// key is an accepted key prefix, and that SplitPrefix splits any string
// into a valid prefix query and a rest starting at the first refused byte.
func FuzzCheckKey(f *testing.F) {
	for _, s := range fzKeySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := upstream.CheckKey(key)
		if err == nil {
			switch {
			case len(key) < 1 || len(key) > upstream.MaxKeyBytes:
				t.Fatalf("CheckKey accepted a key of %d bytes", len(key))
			case !utf8.ValidString(key):
				t.Fatalf("CheckKey accepted invalid UTF-8 %q", key)
			case strings.ContainsAny(key, fzKeyForbidden):
				t.Fatalf("CheckKey accepted %q, which holds one of %q", key, fzKeyForbidden)
			case key == "." || key == "..":
				t.Fatalf("CheckKey accepted %q", key)
			}
		}
		if v := fzKeyViolation(key); (v == "") != (err == nil) {
			t.Fatalf("CheckKey(%q) = %v, but the documented rules say %q", key, err, v)
		}

		prefixErr := upstream.CheckKeyPrefix(key)
		if err == nil && prefixErr != nil {
			t.Fatalf("CheckKeyPrefix refuses the valid key %q: %v", key, prefixErr)
		}
		if prefixErr == nil && (len(key) > upstream.MaxKeyBytes || !utf8.ValidString(key) || strings.ContainsAny(key, fzKeyForbidden)) {
			t.Fatalf("CheckKeyPrefix accepted %q, which no key can start with", key)
		}
		if err == nil {
			// Every prefix that is UTF-8 (a cut mid-rune is not) could
			// still begin a key: this one.
			for i := range len(key) {
				if p := key[:i]; utf8.ValidString(p) {
					if perr := upstream.CheckKeyPrefix(p); perr != nil {
						t.Fatalf("CheckKeyPrefix(%q), a prefix of the valid key %q: %v", p, key, perr)
					}
				}
			}
		}

		query, rest := upstream.SplitPrefix(key)
		if query+rest != key {
			t.Fatalf("SplitPrefix(%q) = %q, %q: they do not join back", key, query, rest)
		}
		if qerr := upstream.CheckPrefixQuery(query); qerr != nil {
			t.Fatalf("SplitPrefix(%q) query part %q is refused: %v", key, query, qerr)
		}
		if rest != "" && !strings.ContainsAny(rest[:1], fzPrefixQueryForbidden) {
			t.Fatalf("SplitPrefix(%q) = %q, %q: the query part is not the longest", key, query, rest)
		}
		if (upstream.CheckPrefixQuery(key) == nil) != (rest == "") {
			t.Fatalf("CheckPrefixQuery(%q) and SplitPrefix disagree (rest %q)", key, rest)
		}
	})
}

// FuzzCheckMetadata checks that CheckMetadata never panics and accepts
// only metadata that fits the limit, has no CR or LF and is UTF-8; and,
// because metadata travels as an HTTP header value (PUT's Metadata request
// header, GET's Metadata response header), only a valid field value.
func FuzzCheckMetadata(f *testing.F) {
	for _, s := range []string{
		"", "meta", `{"content-type":"text/plain"}`, "a\tb", "\t", "é", "\u2028",
		strings.Repeat("m", upstream.MaxMetadataBytes),
		strings.Repeat("m", upstream.MaxMetadataBytes+1),
		strings.Repeat("é", upstream.MaxMetadataBytes/2),
		strings.Repeat("é", upstream.MaxMetadataBytes/2+1),
		strings.Repeat("m", upstream.MaxMetadataBytes-1) + "é",
		"a\rb", "a\nb", "\r", "\n", "x\r\nX-Evil: 1", "a\xffb", "\xc3",
		// Regression: control characters other than HTAB cannot travel as a
		// header value (fix: CheckMetadata refuses them).
		"\x00", "\x01", "a\x1fb", "\x7f", "a\x0bb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, md string) {
		err := upstream.CheckMetadata(md)
		if err != nil {
			return
		}
		switch {
		case len(md) > upstream.MaxMetadataBytes:
			t.Fatalf("CheckMetadata accepted %d bytes", len(md))
		case strings.ContainsAny(md, "\r\n"):
			t.Fatalf("CheckMetadata accepted %q, which holds CR or LF", md)
		case !utf8.ValidString(md):
			t.Fatalf("CheckMetadata accepted invalid UTF-8 %q", md)
		case !testutil.FieldValueOK(md):
			t.Fatalf("CheckMetadata accepted %q, which cannot travel as an HTTP header value", md)
		}
	})
}

// FuzzParseListResponse checks that any body parses or fails with a
// *ResponseError, never panicking, and that a parsed page survives being
// encoded the way Fastly sends it and parsed again.
func FuzzParseListResponse(f *testing.F) {
	for _, s := range []string{
		`{"data":["a","b"],"meta":{"limit":1000,"next_cursor":"CgFi","prefix":"a","consistency":"eventual"}}`,
		`{"data":[],"meta":{"limit":1000}}`,
		`{"data":null,"meta":null}`,
		`{"data":["a"],"meta":{"next_cursor":null}}`,
		`{"data":["a"],"meta":{"next_cursor":""}}`,
		`{"meta":{"next_cursor":"x"}}`,
		`{}`, `null`, ``, ` `, `[]`, `"data"`, `1`, `{"data":[1]}`, `{"data":"a"}`,
		`{"data":["a"]}trailing`, `{"data":["a"]} {"data":["b"]}`, `{"data":["a"`,
		"{\"data\":[\"\xff\"]}", `{"data":["\ud800"]}`, `{"data":["\u0000"]}`,
		`{"DATA":["a"],"Meta":{"Next_Cursor":"c"}}`, `{"data":["a","a"]}`,
		strings.Repeat("[", 10000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := upstream.ParseListResponse(bytes.NewReader(body))
		if err != nil {
			if re, ok := errors.AsType[*upstream.ResponseError](err); !ok || re.Op != upstream.OpList {
				t.Fatalf("ParseListResponse error %v (%T), want a list *ResponseError", err, err)
			}
			return
		}
		if page == nil {
			t.Fatal("ParseListResponse returned neither a page nor an error")
		}
		for _, k := range page.Keys {
			if !utf8.ValidString(k) {
				t.Fatalf("parsed key %q is not UTF-8", k)
			}
		}
		if !utf8.ValidString(page.NextCursor) {
			t.Fatalf("parsed cursor %q is not UTF-8", page.NextCursor)
		}
		again, err := json.Marshal(map[string]any{
			"data": page.Keys,
			"meta": map[string]any{"limit": 1000, "next_cursor": page.NextCursor},
		})
		if err != nil {
			t.Fatal(err)
		}
		page2, err := upstream.ParseListResponse(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("re-encoded page %s does not parse: %v", again, err)
		}
		if !slices.Equal(page.Keys, page2.Keys) || page.NextCursor != page2.NextCursor {
			t.Fatalf("round trip changed the page: %q %q, then %q %q", page.Keys, page.NextCursor, page2.Keys, page2.NextCursor)
		}
	})
}

// FuzzParseBatchResponse checks that any batch answer parses or fails with
// a *ResponseError, never panicking, and that every line error it reports
// has a usable index.
func FuzzParseBatchResponse(f *testing.F) {
	for _, s := range []string{
		``, " \n\t", `{"type":"","title":"success","errors":[]}`,
		`{"errors":[{"key":"k","index":0,"code":"400","reason":"bad"}]}`,
		`{"errors":[{"key":"","index":"3","code":400,"detail":"unparsable"}]}`,
		`{"errors":[{"index":1},{"index":0}]}`,
		`{"errors":[{"index":-1}]}`, `{"errors":[{"index":"-1"}]}`, `{"errors":[{"index":"-0"}]}`,
		`{"errors":[{"key":"k"}]}`, `{"errors":[{"index":null}]}`, `{"errors":[{"index":1.5}]}`,
		`{"errors":[{"index":1e2}]}`, `{"errors":[{"index":"+7"}]}`, `{"errors":[{"index":"\u0031"}]}`,
		`{"errors":[{"index":99999999999999999999}]}`, `{"errors":[{"index":9223372036854775807}]}`,
		`{"errors":[{"index":[0]}]}`, `{"errors":[{"index":{"a":0}}]}`, `{"errors":[{"index":"\"2\""}]}`,
		`{"errors":[null]}`, `{"errors":null}`, `{"errors":{}}`, `null`, `[]`, `"x"`, `{`,
		`{"title":"failure","type":"invalid items"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := upstream.ParseBatchResponse(body)
		if err != nil {
			if re, ok := errors.AsType[*upstream.ResponseError](err); !ok || re.Op != upstream.OpBatch {
				t.Fatalf("ParseBatchResponse error %v (%T), want a batch *ResponseError", err, err)
			}
			return
		}
		if res == nil {
			t.Fatal("ParseBatchResponse returned neither a result nor an error")
		}
		for _, le := range res.LineErrors {
			if le.Index < 0 {
				t.Fatalf("line error %+v has a negative index", le)
			}
		}
		if len(bytes.TrimSpace(body)) == 0 && len(res.LineErrors) > 0 {
			t.Fatalf("an empty body has line errors %+v", res.LineErrors)
		}
	})
}

// fzJSONString is what encoding/json documents a string marshals to once
// decoded: each byte of invalid UTF-8 becomes U+FFFD.
func fzJSONString(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// fzCeilSeconds is ttl in whole seconds rounded up, without overflowing.
func fzCeilSeconds(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	return secs
}

// fzBatchStore is a local store (in memory) for FuzzBatchLineRoundTrip to
// send lines to, with the handler serving it.
type fzBatchStore struct {
	h http.Handler
}

func fzNewBatchStore(t testing.TB) *fzBatchStore {
	st, err := localstore.Open(localstore.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &fzBatchStore{h: st.Handler()}
}

func (s *fzBatchStore) serve(method, target string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, httptest.NewRequest(method, target, bytes.NewReader(body)))
	return rec
}

// FuzzBatchLineRoundTrip checks that AppendBatchLine writes exactly one
// NDJSON line of BatchLineSize bytes, that the line decodes to the item
// (key and metadata as encoding/json coerces them to UTF-8, the value
// through base64, the TTL rounded up to whole seconds), and that the local
// store's batch endpoint accepts the line, and then serves the item, when
// the key and metadata pass CheckKey and CheckMetadata.
func FuzzBatchLineRoundTrip(f *testing.F) {
	type seed struct {
		key      string
		value    []byte
		metadata string
		ttl      int64 // nanoseconds
		bg       bool
	}
	seeds := []seed{
		{"k", []byte("v"), "", 0, false},
		{"users/42", []byte{0, 1, 2, 0xff}, `{"a":1}`, int64(time.Minute), true},
		{"k", nil, "m", 1, false},                          // 1ns rounds up to 1s
		{"k", []byte{}, "", int64(time.Second + 1), false}, // 2s
		{"k", []byte("x"), "", int64(time.Second), false},  // exactly 1s
		{"k", []byte("x"), "", -int64(time.Second), false}, // negative: no TTL
		{"<&>\u2028\u2029\"\\/", []byte("html"), "<&>\u2028", 0, true},
		{"a\xffb", []byte("invalid UTF-8 key"), "\xfe", 0, false}, // coerced to U+FFFD
		{"\xed\xa0\x80", nil, "", 0, false},                       // a surrogate: 3 bytes, 3 U+FFFD
		{"a\nb", []byte("LF in a key"), "a\r\nb", 0, false},
		{"\x00\x01\x1f\x7f", []byte("control characters"), "\t", 0, false},
		{strings.Repeat("k", upstream.MaxKeyBytes), bytes.Repeat([]byte{0xAA}, 100), strings.Repeat("m", upstream.MaxMetadataBytes), int64(time.Hour), true},
		{strings.Repeat("k", upstream.MaxKeyBytes+1), []byte("v"), strings.Repeat("m", upstream.MaxMetadataBytes+1), 0, false},
		{strings.Repeat("\x01", upstream.MaxKeyBytes), nil, strings.Repeat("é", upstream.MaxMetadataBytes/2), 0, false},
		{".", nil, "", 0, false},
		{"a/./b", nil, "", 0, false},
		{".well-known/acme-challenge/x", nil, "", 0, false},
		// Regression: ttlSeconds overflowed for a TTL within a second of the
		// largest Duration (durationpb.AsDuration saturates to it), so the
		// TTL was dropped (fix: divide, then round up).
		{"k", []byte("v"), "", math.MaxInt64, false},
		{"k", []byte("v"), "", 9223372036 * int64(time.Second), false},
		{"k", []byte("v"), "", math.MaxInt64 - int64(time.Second) + 2, false},
		// Regression: metadata with a control character other than HTAB was
		// accepted, and the item's GET then sent an invalid header (fix:
		// CheckMetadata refuses it).
		{"k", []byte("v"), "\x01", 0, false},
	}
	for _, s := range seeds {
		f.Add(s.key, s.value, s.metadata, s.ttl, s.bg)
	}
	store := fzNewBatchStore(f)
	f.Fuzz(func(t *testing.T, key string, value []byte, metadata string, ttl int64, bg bool) {
		bl := upstream.BatchLine{Key: key, Value: value, Metadata: metadata, TimeToLive: time.Duration(ttl), BackgroundFetch: bg}
		line := fzAppendOneBatchLine(t, bl)
		fzCheckBatchLineFields(t, line, bl)
		// The local store takes the line whenever the item is valid.
		if upstream.CheckKey(key) != nil || upstream.CheckMetadata(metadata) != nil {
			return
		}
		store.checkBatchWrite(t, line, bl)
	})
}

// fzAppendOneBatchLine appends bl after an earlier line, checks that
// AppendBatchLine kept what was there and wrote exactly one LF-terminated
// line of BatchLineSize bytes, and returns that line.
func fzAppendOneBatchLine(t *testing.T, bl upstream.BatchLine) []byte {
	t.Helper()
	const prefix = "previous line\n"
	out := upstream.AppendBatchLine([]byte(prefix), bl)
	if !bytes.HasPrefix(out, []byte(prefix)) {
		t.Fatalf("AppendBatchLine changed what dst held: %q", out)
	}
	line := out[len(prefix):]
	if n := upstream.BatchLineSize(bl); n != len(line) {
		t.Fatalf("BatchLineSize = %d, AppendBatchLine wrote %d bytes: %q", n, len(line), line)
	}
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 || bytes.ContainsRune(line, '\r') {
		t.Fatalf("not exactly one line ending in LF: %q", line)
	}
	return line
}

// fzCheckBatchLineFields checks that line decodes to bl and carries no
// other field: key and metadata as encoding/json coerces them to UTF-8, the
// value through base64, the TTL rounded up to whole seconds, and the
// optional fields only when set.
func fzCheckBatchLineFields(t *testing.T, line []byte, bl upstream.BatchLine) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		t.Fatalf("line %q is not a JSON object: %v", line, err)
	}
	var got struct {
		Key             *string `json:"key"`
		Value           *string `json:"value"`
		Metadata        *string `json:"metadata"`
		TimeToLiveSec   *int64  `json:"time_to_live_sec"`
		BackgroundFetch *bool   `json:"background_fetch"`
	}
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("line %q does not decode: %v", line, err)
	}
	wantFields := 2
	if got.Key == nil || *got.Key != fzJSONString(bl.Key) {
		t.Fatalf("line %q: key decodes to %v, want %q", line, got.Key, fzJSONString(bl.Key))
	}
	if utf8.ValidString(bl.Key) && *got.Key != bl.Key {
		t.Fatalf("line %q: the UTF-8 key %q came back as %q", line, bl.Key, *got.Key)
	}
	if got.Value == nil {
		t.Fatalf("line %q has no value", line)
	}
	if v, err := base64.StdEncoding.Strict().DecodeString(*got.Value); err != nil || !bytes.Equal(v, bl.Value) {
		t.Fatalf("line %q: value decodes to %q, %v; want %q", line, v, err, bl.Value)
	}
	if bl.Metadata == "" {
		if got.Metadata != nil {
			t.Fatalf("line %q carries metadata for none", line)
		}
	} else {
		wantFields++
		if got.Metadata == nil || *got.Metadata != fzJSONString(bl.Metadata) {
			t.Fatalf("line %q: metadata decodes to %v, want %q", line, got.Metadata, fzJSONString(bl.Metadata))
		}
	}
	if secs := fzCeilSeconds(bl.TimeToLive); secs == 0 {
		if got.TimeToLiveSec != nil {
			t.Fatalf("line %q carries a TTL for %v", line, bl.TimeToLive)
		}
	} else {
		wantFields++
		if got.TimeToLiveSec == nil || *got.TimeToLiveSec != secs {
			t.Fatalf("line %q: time_to_live_sec for a TTL of %dns is %v, want %d (rounded up)", line, int64(bl.TimeToLive), got.TimeToLiveSec, secs)
		}
	}
	if bl.BackgroundFetch {
		wantFields++
		if got.BackgroundFetch == nil || !*got.BackgroundFetch {
			t.Fatalf("line %q: background_fetch is %v, want true", line, got.BackgroundFetch)
		}
	} else if got.BackgroundFetch != nil {
		t.Fatalf("line %q carries background_fetch for false", line)
	}
	if len(fields) != wantFields {
		t.Fatalf("line %q has %d fields, want %d", line, len(fields), wantFields)
	}
}

// checkBatchWrite sends line, which holds the valid item bl, to the local
// store's batch endpoint and checks that the store accepts it and then
// serves the item back with valid headers.
func (s *fzBatchStore) checkBatchWrite(t *testing.T, line []byte, bl upstream.BatchLine) {
	t.Helper()
	key := bl.Key
	rec := s.serve(http.MethodPut, "/resources/stores/kv/fz/batch", line)
	if rec.Code != http.StatusOK {
		t.Fatalf("the local store refused the valid line %q: %d %s", line, rec.Code, rec.Body)
	}
	rec = s.serve(http.MethodGet, "/resources/stores/kv/fz/keys/"+url.PathEscape(key), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET of the batch-written key %q: %d %s", key, rec.Code, rec.Body)
	}
	if !bytes.Equal(rec.Body.Bytes(), bl.Value) {
		t.Fatalf("GET of %q = %q, want %q", key, rec.Body.Bytes(), bl.Value)
	}
	for name, vs := range rec.Header() {
		for _, v := range vs {
			if !testutil.FieldValueOK(v) {
				t.Fatalf("GET of %q answers header %s: %q, which is not a valid field value", key, name, v)
			}
		}
	}
	if md := rec.Header().Get("Metadata"); md != bl.Metadata {
		t.Fatalf("GET of %q: Metadata %q, want %q", key, md, bl.Metadata)
	}
	if _, err := strconv.ParseUint(rec.Header().Get("Generation"), 10, 64); err != nil {
		t.Fatalf("GET of %q: Generation %q is not decimal", key, rec.Header().Get("Generation"))
	}
}
