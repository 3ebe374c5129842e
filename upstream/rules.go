package upstream

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Fastly's documented limits for KV Store items.
const (
	// MaxKeyBytes is the longest key Fastly accepts, in bytes of UTF-8.
	MaxKeyBytes = 1024
	// MaxMetadataBytes is the most metadata Fastly stores beside a value.
	MaxMetadataBytes = 2000
	// DefaultMaxValueBytes is Fastly's default value size limit (25 MiB).
	DefaultMaxValueBytes = 25 << 20
	// FastlyMaxValueBytes is the largest value Fastly allows on request (100 MiB).
	FastlyMaxValueBytes = 100 << 20
	// DefaultPageSize is the page size Fastly's list endpoint uses when no
	// limit is sent, as observed on the wire (the published spec says 100).
	DefaultPageSize = 1000
)

// keyForbiddenChars are the characters Fastly refuses anywhere in a key.
const keyForbiddenChars = "\r\n#;?^|"

// prefixForbiddenChars are the characters Fastly's API reference forbids in
// the prefix query of the list endpoint. Keys may contain most of them.
const prefixForbiddenChars = "!\"$%&()*+,/:<=>@[]`{}"

// CheckKey reports why Fastly would refuse key, or nil when it is a valid
// key. The rules are Fastly's: 1 to 1024 bytes of UTF-8; not "." or "..";
// no "./" or "../" segment and no trailing "/." or "/.."; not under
// ".well-known/acme-challenge"; none of CR, LF, '#', ';', '?', '^', '|';
// and not a single control character, space, U+FFFE or U+FFFF.
func CheckKey(key string) error {
	switch {
	case key == "":
		return errors.New("must not be empty")
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("is %d bytes; the limit is %d", len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return errors.New("must be valid UTF-8")
	case key == "." || key == "..":
		return fmt.Errorf("must not be %q", key)
	case strings.Contains(key, "./"):
		return errors.New(`must not contain "./" or "../"`)
	case strings.HasSuffix(key, "/.") || strings.HasSuffix(key, "/.."):
		return errors.New(`must not end with "/." or "/.."`)
	case strings.HasPrefix(key, ".well-known/acme-challenge"):
		return errors.New(`must not start with ".well-known/acme-challenge"`)
	}
	if i := strings.IndexAny(key, keyForbiddenChars); i >= 0 {
		return fmt.Errorf("must not contain %q", key[i])
	}
	if r, size := utf8.DecodeRuneInString(key); size == len(key) && (r <= 0x20 || r == 0xFFFE || r == 0xFFFF) {
		return fmt.Errorf("must not be the single character %U", r)
	}
	return nil
}

// CheckMetadata reports why Fastly would refuse metadata: more than 2000
// bytes, a CR or LF, or another control character but tab. It travels as
// an HTTP header value, where those are not allowed, so an item written
// with one (through a batch, which carries metadata in JSON) could not be
// read back.
func CheckMetadata(metadata string) error {
	if len(metadata) > MaxMetadataBytes {
		return fmt.Errorf("is %d bytes; the limit is %d", len(metadata), MaxMetadataBytes)
	}
	if strings.ContainsAny(metadata, "\r\n") {
		return errors.New("must not contain CR or LF")
	}
	for i := range len(metadata) {
		if c := metadata[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("must not contain the control character %U", rune(c))
		}
	}
	if !utf8.ValidString(metadata) {
		return errors.New("must be valid UTF-8")
	}
	return nil
}

// CheckKeyPrefix reports why no key could begin with prefix: it holds a
// character that keys may not contain, is not UTF-8, or is longer than a key.
// The empty prefix is valid.
func CheckKeyPrefix(prefix string) error {
	if len(prefix) > MaxKeyBytes {
		return fmt.Errorf("is %d bytes; keys are at most %d", len(prefix), MaxKeyBytes)
	}
	if !utf8.ValidString(prefix) {
		return errors.New("must be valid UTF-8")
	}
	if i := strings.IndexAny(prefix, keyForbiddenChars); i >= 0 {
		return fmt.Errorf("contains %q, which no key can contain", prefix[i])
	}
	return nil
}

// CheckPrefixQuery reports why Fastly's list endpoint would refuse prefix
// as its prefix query parameter.
func CheckPrefixQuery(prefix string) error {
	if i := strings.IndexAny(prefix, prefixForbiddenChars); i >= 0 {
		return fmt.Errorf("must not contain %q in a prefix query", prefix[i])
	}
	return nil
}

// SplitPrefix splits a key prefix into the longest leading part that Fastly
// accepts as a prefix query and the rest, which the caller must match
// itself.
func SplitPrefix(prefix string) (query, rest string) {
	i := strings.IndexAny(prefix, prefixForbiddenChars)
	if i < 0 {
		return prefix, ""
	}
	return prefix[:i], prefix[i:]
}
