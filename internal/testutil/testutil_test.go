package testutil_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/internal/testutil"
)

// recorder is a testing.TB that records a Fatalf instead of failing the
// test, and stops the calling goroutine as the real one does.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// record runs fn against a recorder on a goroutine of its own, so that a
// Fatalf ends fn without ending the test.
func record(fn func(tb testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

func TestLockedBufferConcurrentWrites(t *testing.T) {
	t.Parallel()
	var b testutil.LockedBuffer
	const writers, lines = 8, 100
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range lines {
				fmt.Fprintln(&b, "line")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "line\n"); got != writers*lines {
		t.Fatalf("buffer holds %d lines, want %d", got, writers*lines)
	}
}

func TestWantCode(t *testing.T) {
	t.Parallel()
	notFound := connect.NewError(connect.CodeNotFound, "no such key")
	wrapped := fmt.Errorf("calling: %w", notFound)
	tests := []struct {
		name  string
		err   error
		fatal string // a substring of the failure; "" when the check passes
	}{
		{"match", notFound, ""},
		{"wrapped match", wrapped, ""},
		{"nil", nil, "GetItem succeeded, want code not_found"},
		{"other code", connect.NewError(connect.CodeAborted, "generation moved"), `GetItem: code aborted ("generation moved"), want not_found`},
		{"not a connect error", io.ErrUnexpectedEOF, "carries no RPC code, want not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got *connect.Error
			r := record(func(tb testing.TB) {
				got = testutil.WantCode(tb, "GetItem", tt.err, connect.CodeNotFound)
			})
			if tt.fatal == "" {
				if r.fatal != "" {
					t.Fatalf("WantCode failed: %s", r.fatal)
				}
				if got != notFound {
					t.Fatalf("WantCode returned %v, want the *connect.Error it checked", got)
				}
				return
			}
			if !strings.Contains(r.fatal, tt.fatal) {
				t.Fatalf("WantCode failure = %q, want it to contain %q", r.fatal, tt.fatal)
			}
		})
	}
}

func TestWantCodeOf(t *testing.T) {
	t.Parallel()
	// codeOf reads a "code:message" error, standing in for another
	// library's status errors.
	codeOf := func(err error) (int, string, bool) {
		var code int
		var msg string
		n, _ := fmt.Sscanf(err.Error(), "%d:%s", &code, &msg)
		return code, msg, n == 2
	}
	if r := record(func(tb testing.TB) { testutil.WantCodeOf(tb, "call", errors.New("5:gone"), 5, codeOf) }); r.fatal != "" {
		t.Errorf("matching code failed: %s", r.fatal)
	}
	r := record(func(tb testing.TB) { testutil.WantCodeOf(tb, "call", errors.New("10:moved"), 5, codeOf) })
	if want := `call: code 10 ("moved"), want 5`; r.fatal != want {
		t.Errorf("failure = %q, want %q", r.fatal, want)
	}
}

func TestDiffKeys(t *testing.T) {
	t.Parallel()
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("k%02d", i)
	}
	tests := []struct {
		name      string
		got, want []string
		diff      string
	}{
		{"equal", []string{"a", "b"}, []string{"a", "b"}, ""},
		{"both empty", nil, []string{}, ""},
		{"missing", []string{"a", "c"}, []string{"a", "b", "c"},
			`got 2 keys, want 3; missing ["b"]; first difference at 1: got "c", want "b"`},
		{"unexpected", []string{"a", "b", "x"}, []string{"a", "b"},
			`got 3 keys, want 2; unexpected ["x"]`},
		{"repeated", []string{"a", "b", "b", "c"}, []string{"a", "b", "c"},
			`got 4 keys, want 3; unexpected ["b"]; "b" repeated; first difference at 2: got "b", want "c"`},
		{"order", []string{"b", "a"}, []string{"a", "b"},
			`got 2 keys, want 2; first difference at 0: got "b", want "a"`},
		{"clipped", nil, many,
			`got 0 keys, want 12; missing ["k00" "k01" "k02" "k03" "k04" "k05" "k06" "k07" "k08" "k09"] ... 12 in all`},
	}
	for _, tt := range tests {
		if got := testutil.DiffKeys(tt.got, tt.want); got != tt.diff {
			t.Errorf("%s: DiffKeys(%q, %q) =\n%s\nwant\n%s", tt.name, tt.got, tt.want, got, tt.diff)
		}
	}
}

// fakeStream returns msgs, then end.
type fakeStream struct {
	msgs []int
	end  error
}

func (s *fakeStream) Receive() (int, error) {
	if len(s.msgs) == 0 {
		return 0, s.end
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func TestReadStream(t *testing.T) {
	t.Parallel()
	msgs, err := testutil.ReadStream((&fakeStream{msgs: []int{1, 2, 3}, end: io.EOF}).Receive)
	if err != nil || fmt.Sprint(msgs) != "[1 2 3]" {
		t.Errorf("clean end: got %v, %v; want [1 2 3], nil", msgs, err)
	}
	cut := connect.NewError(connect.CodeUnavailable, "shutting down")
	msgs, err = testutil.ReadStream((&fakeStream{msgs: []int{1}, end: cut}).Receive)
	if err != cut || fmt.Sprint(msgs) != "[1]" {
		t.Errorf("failure: got %v, %v; want [1], %v", msgs, err, cut)
	}
}

func TestMessagesStopsEarly(t *testing.T) {
	t.Parallel()
	s := &fakeStream{msgs: []int{1, 2, 3}, end: io.EOF}
	for msg, err := range testutil.Messages(s.Receive) {
		if err != nil || msg != 1 {
			t.Fatalf("first message = %d, %v; want 1, nil", msg, err)
		}
		break
	}
	if len(s.msgs) != 2 {
		t.Fatalf("breaking out after one message left %d unread, want 2", len(s.msgs))
	}
}

func TestFieldValueOK(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"":                true,
		"plain value":     true,
		"tab\tinside":     true,
		"ключ \x80\xff":   true, // obs-text
		"line\nbreak":     false,
		"carriage\rret":   false,
		"nul\x00":         false,
		"delete\x7f":      false,
		"escape\x1b[0m":   false,
		"unit sep\x1fend": false,
	} {
		if got := testutil.FieldValueOK(s); got != want {
			t.Errorf("FieldValueOK(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestDedent(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"  a\n    b\n", "a\n  b\n"},
		{"\ta\n\n\t\tb\n", "a\n\n\tb\n"},
		{"  a\n b\n", " a\nb\n"},
		{"a\n", "a\n"},
	}
	for _, tt := range tests {
		if got := testutil.Dedent(tt.in); got != tt.want {
			t.Errorf("Dedent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
