// Package testutil holds the small helpers kvgate's tests share: a log
// sink safe for concurrent writers, RPC error-code assertions, a readable
// diff of two key lists, a stream reader, and the HTTP field-value rule the
// fuzz targets check against, and the browser tests' check for Chromium,
// node and node_modules, and the README example extraction the docs tests
// compare with what they run.
//
// It imports no generated code, so the grpc-go interop tests (whose stubs
// register the same proto files as the product's) may use it too.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"
)

// LockedBuffer is a bytes.Buffer that several goroutines may write to and
// read from at once: a server's slog handler, or the stdout and stderr
// copiers of a child process. The zero value is ready to use.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WantCode fails tb unless err is a *connect.Error (or wraps one) with
// code want, and returns that error for closer inspection. what names the
// call in the failure message, which also shows the code and message got.
func WantCode(tb testing.TB, what string, err error, want connect.Code) *connect.Error {
	tb.Helper()
	WantCodeOf(tb, what, err, want, connectCode)
	var cerr *connect.Error
	errors.As(err, &cerr)
	return cerr
}

// connectCode reads err's code and message when it is a *connect.Error.
func connectCode(err error) (connect.Code, string, bool) {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return 0, "", false
	}
	return cerr.Code(), cerr.Message(), true
}

// WantCodeOf is WantCode for errors of another RPC library, such as
// grpc-go's status errors: codeOf returns err's code and message, or false
// when err is not one of that library's errors.
func WantCodeOf[C comparable](tb testing.TB, what string, err error, want C, codeOf func(error) (code C, msg string, ok bool)) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s succeeded, want code %v", what, want)
	}
	code, msg, ok := codeOf(err)
	switch {
	case !ok:
		tb.Fatalf("%s: %v (%T) carries no RPC code, want %v", what, err, err, want)
	case code != want:
		tb.Fatalf("%s: code %v (%q), want %v", what, code, msg, want)
	}
}

// keysShown caps each list of keys in a DiffKeys report.
const keysShown = 10

// DiffKeys describes how the key list got differs from want, or returns ""
// when they are equal. The report gives both lengths, the keys missing from
// got and those it has unexpectedly (counting repeats, so a key delivered
// twice is unexpected once), the first key repeated in got, and the first
// position where the lists differ, which is all there is to say when they
// hold the same keys in another order. Neither list need be sorted.
func DiffKeys(got, want []string) string {
	if slices.Equal(got, want) {
		return ""
	}
	pending := make(map[string]int, len(want))
	for _, k := range want {
		pending[k]++
	}
	var unexpected []string
	for _, k := range got {
		if pending[k] > 0 {
			pending[k]--
		} else {
			unexpected = append(unexpected, k)
		}
	}
	var missing []string
	for _, k := range want {
		if pending[k] > 0 {
			pending[k]--
			missing = append(missing, k)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "got %d keys, want %d", len(got), len(want))
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; missing %s", clipKeys(missing))
	}
	if len(unexpected) > 0 {
		fmt.Fprintf(&b, "; unexpected %s", clipKeys(unexpected))
	}
	seen := make(map[string]bool, len(got))
	for _, k := range got {
		if seen[k] {
			fmt.Fprintf(&b, "; %q repeated", k)
			break
		}
		seen[k] = true
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			fmt.Fprintf(&b, "; first difference at %d: got %q, want %q", i, got[i], want[i])
			break
		}
	}
	return b.String()
}

// clipKeys quotes the first keysShown keys and counts the rest.
func clipKeys(keys []string) string {
	if len(keys) <= keysShown {
		return fmt.Sprintf("%q", keys)
	}
	return fmt.Sprintf("%q ... %d in all", keys[:keysShown], len(keys))
}

// Messages iterates over a server stream: it calls recv, the stream's
// Receive (connect) or Recv (grpc-go) method, until it returns io.EOF. A
// failure other than io.EOF is yielded once, with the zero T, and ends the
// iteration; a clean end yields no error at all.
func Messages[T any](recv func() (T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			msg, err := recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			if !yield(msg, nil) {
				return
			}
		}
	}
}

// ReadStream receives a server stream's messages until io.EOF, through
// its Receive (connect) or Recv (grpc-go) method. On any other failure it
// returns the messages received before it with the error.
func ReadStream[T any](recv func() (T, error)) ([]T, error) {
	var msgs []T
	for msg, err := range Messages(recv) {
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// FieldValueOK reports whether s can travel as an HTTP field value: RFC
// 9110 allows HTAB, SP, VCHAR and obs-text, so no other control character.
// This is the rule net/http enforces: its client refuses to send any other
// value ("invalid header field value"), its server answers a request that
// carries one with 400, and its client refuses a response that does.
func FieldValueOK(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
