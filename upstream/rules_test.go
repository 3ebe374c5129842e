package upstream

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckKey pins Fastly's key rules (reference §4, taken from Viceroy's
// is_valid_key, which tracks production). A key Fastly would refuse must be
// refused here too, or the facade would forward it and get an opaque 400;
// and a key Fastly accepts must not be refused, or data becomes unreachable.
func TestCheckKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		// wantErr is a fragment of the error message, so that a key is
		// refused for the right reason; empty means the key is valid.
		wantErr string
	}{
		// Valid keys.
		{name: "single letter", key: "a"},
		{name: "slash path", key: "users/42"},
		{name: "colon", key: "a:b"},
		// '*', '[' and ']' are allowed: fastly/cli#1383 confirmed '*' works
		// against api.fastly.com.
		{name: "star", key: "x*"},
		{name: "brackets", key: "[k]"},
		{name: "cyrillic", key: "ключ"},
		{name: "cjk path", key: "日本語/キー"},
		{name: "single non-ASCII rune", key: "🙂"},
		{name: "single bang is above U+0020", key: "!"},
		{name: "single DEL is not in the forbidden range", key: "\x7f"},
		{name: "single NBSP is not in the forbidden range", key: "\u00a0"},
		{name: "control char in a longer key", key: "\x01a"},
		{name: "space in a longer key", key: "a b"},
		{name: "dot inside", key: "a.b"},
		{name: "leading dot", key: ".a"},
		{name: "double dot inside", key: "a..b"},
		{name: "trailing slash", key: "a/"},
		{name: "double slash", key: "a//b"},
		{name: "other well-known path", key: ".well-known/other"},
		{name: "acme path not at the start", key: "x/.well-known/acme-challenge/y"},
		{name: "percent and plus", key: "100%+x"},
		{name: "1024 ASCII bytes", key: strings.Repeat("k", MaxKeyBytes)},
		// The limit is bytes, not runes: 512 two-byte runes are 1024 bytes.
		{name: "1024 bytes of two-byte runes", key: strings.Repeat("é", MaxKeyBytes/2)},

		// Invalid keys.
		{name: "empty", key: "", wantErr: "empty"},
		{name: "1025 bytes", key: strings.Repeat("k", MaxKeyBytes+1), wantErr: "1025 bytes"},
		{name: "1026 bytes of two-byte runes", key: strings.Repeat("é", MaxKeyBytes/2+1), wantErr: "1026 bytes"},
		{name: "invalid UTF-8 alone", key: "\xff", wantErr: "UTF-8"},
		{name: "invalid UTF-8 inside", key: "a\xffb", wantErr: "UTF-8"},
		{name: "truncated multibyte rune", key: "a\xd0", wantErr: "UTF-8"},
		{name: "dot", key: ".", wantErr: `"."`},
		{name: "dot dot", key: "..", wantErr: `".."`},
		{name: "dot segment inside", key: "a/./b", wantErr: `"./"`},
		{name: "leading dot-dot segment", key: "../x", wantErr: `"./"`},
		{name: "leading dot segment", key: "./x", wantErr: `"./"`},
		{name: "dot-dot segment inside", key: "a/../b", wantErr: `"./"`},
		{name: "trailing dot segment", key: "a/.", wantErr: `"/."`},
		{name: "trailing dot-dot segment", key: "a/..", wantErr: `"/.."`},
		{name: "acme challenge", key: ".well-known/acme-challenge/x", wantErr: "acme-challenge"},
		{name: "acme challenge exactly", key: ".well-known/acme-challenge", wantErr: "acme-challenge"},
		{name: "CR", key: "a\rb", wantErr: `'\r'`},
		{name: "LF", key: "a\nb", wantErr: `'\n'`},
		{name: "hash", key: "a#b", wantErr: "'#'"},
		{name: "semicolon", key: "a;b", wantErr: "';'"},
		{name: "question mark", key: "a?b", wantErr: "'?'"},
		{name: "caret", key: "a^b", wantErr: "'^'"},
		{name: "pipe", key: "a|b", wantErr: "'|'"},
		{name: "forbidden char alone", key: "#", wantErr: "'#'"},
		{name: "single space", key: " ", wantErr: "U+0020"},
		{name: "single NUL", key: "\x00", wantErr: "U+0000"},
		{name: "single tab", key: "\t", wantErr: "U+0009"},
		{name: "single unit separator", key: "\x1f", wantErr: "U+001F"},
		{name: "single U+FFFE", key: "\uFFFE", wantErr: "U+FFFE"},
		{name: "single U+FFFF", key: "\uFFFF", wantErr: "U+FFFF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, CheckKey(tt.key), tt.wantErr)
		})
	}
}

// TestCheckMetadata pins the metadata rules: at most 2000 bytes, and no CR
// or LF because metadata travels as an HTTP header value.
func TestCheckMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		metadata string
		wantErr  string
	}{
		{name: "empty", metadata: ""},
		{name: "short", metadata: "meta"},
		{name: "JSON", metadata: `{"content-type":"text/plain"}`},
		{name: "tab is a valid header byte", metadata: "a\tb"},
		{name: "2000 bytes", metadata: strings.Repeat("m", MaxMetadataBytes)},
		{name: "2000 bytes of two-byte runes", metadata: strings.Repeat("é", MaxMetadataBytes/2)},
		{name: "2001 bytes", metadata: strings.Repeat("m", MaxMetadataBytes+1), wantErr: "2001 bytes"},
		{name: "CR", metadata: "a\rb", wantErr: "CR or LF"},
		{name: "LF", metadata: "a\nb", wantErr: "CR or LF"},
		{name: "CRLF header injection", metadata: "x\r\nX-Evil: 1", wantErr: "CR or LF"},
		{name: "invalid UTF-8", metadata: "a\xffb", wantErr: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, CheckMetadata(tt.metadata), tt.wantErr)
		})
	}
}

// TestCheckKeyPrefix checks the rule that decides whether any key could
// start with a prefix; an impossible prefix is refused rather than answered
// with an empty listing that hides the caller's mistake.
func TestCheckKeyPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prefix  string
		wantErr string
	}{
		{name: "empty lists everything", prefix: ""},
		{name: "path", prefix: "users/"},
		// Characters the list query refuses are still fine in a key prefix;
		// SplitPrefix handles them.
		{name: "star", prefix: "a*"},
		{name: "slash colon equals", prefix: "a/b:c=d"},
		// A prefix of "." is fine: ".a" is a valid key.
		{name: "dot", prefix: "."},
		{name: "unicode", prefix: "ключ"},
		{name: "1024 bytes", prefix: strings.Repeat("p", MaxKeyBytes)},
		{name: "1025 bytes", prefix: strings.Repeat("p", MaxKeyBytes+1), wantErr: "1025 bytes"},
		{name: "invalid UTF-8", prefix: "a\xff", wantErr: "UTF-8"},
		{name: "CR", prefix: "a\r", wantErr: `'\r'`},
		{name: "LF", prefix: "a\n", wantErr: `'\n'`},
		{name: "hash", prefix: "a#", wantErr: "'#'"},
		{name: "semicolon", prefix: "a;", wantErr: "';'"},
		{name: "question mark", prefix: "a?", wantErr: "'?'"},
		{name: "caret", prefix: "a^", wantErr: "'^'"},
		{name: "pipe", prefix: "a|", wantErr: "'|'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, CheckKeyPrefix(tt.prefix), tt.wantErr)
		})
	}
}

// TestCheckPrefixQuery checks the characters Fastly's list endpoint refuses
// in its prefix query parameter. Every one of them must be refused, or the
// client would send a listing Fastly answers with 400.
func TestCheckPrefixQuery(t *testing.T) {
	t.Parallel()
	type tc struct {
		name    string
		prefix  string
		wantErr string
	}
	tests := []tc{
		{name: "empty", prefix: ""},
		{name: "plain", prefix: "users"},
		{name: "unreserved punctuation", prefix: "a-b_c.d~"},
		{name: "unicode", prefix: "ключ"},
		// '#' and friends are key rules, not prefix-query rules.
		{name: "hash is not a query rule", prefix: "a#"},
	}
	for _, c := range prefixForbiddenChars {
		tests = append(tests, tc{
			name:    "forbidden " + string(c),
			prefix:  "ab" + string(c) + "cd",
			wantErr: fmt.Sprintf("%q", byte(c)), // the rule quotes the byte it found
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, CheckPrefixQuery(tt.prefix), tt.wantErr)
		})
	}
}

// TestPrefixForbiddenCharsList guards the forbidden set itself against an
// accidental edit: these are the characters Fastly's API reference lists.
func TestPrefixForbiddenCharsList(t *testing.T) {
	t.Parallel()
	for _, c := range "!\"$%&()*+,/:<=>@[]`{}" {
		if CheckPrefixQuery(string(c)) == nil {
			t.Errorf("CheckPrefixQuery(%q) = nil, want an error", c)
		}
	}
}

// TestSplitPrefix checks that a key prefix splits into the longest part the
// list endpoint accepts and a rest the caller filters itself, and that the
// two always join back into the original prefix.
func TestSplitPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, query, rest string
	}{
		{prefix: "users/42", query: "users", rest: "/42"},
		{prefix: "abc", query: "abc", rest: ""},
		{prefix: "", query: "", rest: ""},
		{prefix: "/x", query: "", rest: "/x"},
		{prefix: "a:b/c", query: "a", rest: ":b/c"},
		{prefix: "ключ*", query: "ключ", rest: "*"},
		{prefix: "a#b", query: "a#b", rest: ""},
		{prefix: "x=", query: "x", rest: "="},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			t.Parallel()
			query, rest := SplitPrefix(tt.prefix)
			if query != tt.query || rest != tt.rest {
				t.Fatalf("SplitPrefix(%q) = %q, %q; want %q, %q", tt.prefix, query, rest, tt.query, tt.rest)
			}
			if query+rest != tt.prefix {
				t.Errorf("query+rest = %q, want the original %q", query+rest, tt.prefix)
			}
			if err := CheckPrefixQuery(query); err != nil {
				t.Errorf("the query part %q is refused: %v", query, err)
			}
		})
	}
}

func checkErr(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("got nil, want an error containing %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("error %q does not contain %q", err, wantErr)
	}
}
