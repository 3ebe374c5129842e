package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is an underlying writer that keeps each write apart.
type recorder struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), r.err
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// TestWriterBatches checks when a Writer writes: not on every line, at
// once when the batch fills up, on Flush, and by itself after its delay.
func TestWriterBatches(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	w := New(rec, time.Hour, 10)
	_, _ = w.Write([]byte("abc\n"))
	_, _ = w.Write([]byte("def\n"))
	if got := rec.all(); len(got) != 0 {
		t.Fatalf("wrote %q before the batch filled", got)
	}
	_, _ = w.Write([]byte("ghi\n")) // 12 bytes >= 10
	if got := rec.all(); len(got) != 1 || got[0] != "abc\ndef\nghi\n" {
		t.Fatalf("writes = %q, want the three lines in one", got)
	}
	_, _ = w.Write([]byte("jkl\n"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 2 || got[1] != "jkl\n" {
		t.Fatalf("writes = %q, want jkl flushed", got)
	}

	timed := &recorder{}
	tw := New(timed, time.Millisecond, 1<<20)
	_, _ = tw.Write([]byte("late\n"))
	deadline := time.Now().Add(10 * time.Second)
	for len(timed.all()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the delay never wrote the line")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterReportsErrors checks that a failed write surfaces on Flush.
func TestWriterReportsErrors(t *testing.T) {
	t.Parallel()
	broken := errors.New("disk full")
	w := New(&recorder{err: broken}, time.Hour, 1)
	if _, err := w.Write([]byte("x\n")); err != nil {
		t.Fatalf("Write = %v; errors wait for Flush", err)
	}
	if err := w.Flush(); !errors.Is(err, broken) {
		t.Fatalf("Flush = %v, want %v", err, broken)
	}
}

// TestFlushAbove checks that a Warn line is written at once, after the
// Info lines before it and in order, while Info lines wait; also through
// WithAttrs and WithGroup.
func TestFlushAbove(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	w := New(rec, time.Hour, 1<<20)
	logger := slog.New(FlushAbove(slog.NewTextHandler(w, nil), w, slog.LevelWarn))
	cases := []struct {
		name   string
		logger *slog.Logger
	}{
		{"plain", logger},
		{"with attrs", logger.With("component", "x")},
		{"with group", logger.WithGroup("g")},
	}
	for i, tc := range cases {
		tc.logger.Info("first", "i", i)
		tc.logger.Info("second", "i", i)
		if got := len(rec.all()); got != i {
			t.Fatalf("%s: Info lines were written at once", tc.name)
		}
		tc.logger.Warn("third", "i", i)
		got := rec.all()
		if len(got) != i+1 {
			t.Fatalf("%s: the Warn line was not written at once", tc.name)
		}
		first, second, third := strings.Index(got[i], "first"), strings.Index(got[i], "second"), strings.Index(got[i], "third")
		if first < 0 || !(first < second && second < third) {
			t.Fatalf("%s: write %q does not hold the three lines in order", tc.name, got[i])
		}
	}
}

// TestWriterKeepsLinesWhole writes from many goroutines and checks every
// line arrives whole.
func TestWriterKeepsLinesWhole(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := New(&out, time.Hour, 256)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				_, _ = fmt.Fprintf(w, "goroutine %d line %d end\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, l := range lines {
		var g, i int
		if n, err := fmt.Sscanf(l, "goroutine %d line %d end", &g, &i); n != 2 || err != nil {
			t.Fatalf("broken line %q", l)
		}
	}
}
