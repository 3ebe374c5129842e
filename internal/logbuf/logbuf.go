// Package logbuf batches log lines into fewer writes. kvgate logs one line
// per RPC; written straight to stderr that is one write system call per
// RPC, a cost on the hot path of every call. A [Writer] gathers lines and
// writes them together once MaxBytes have gathered or Delay has passed
// since the first, whichever comes first. [FlushAbove] makes a handler
// write at once, with everything gathered before it, when a line at or
// above a level is logged, so failures are never held back and never
// lost to a crash, and lines keep their order.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Defaults of a Writer.
const (
	DefaultDelay    = 100 * time.Millisecond
	DefaultMaxBytes = 64 << 10
)

// Writer gathers what is written to it and writes it to the underlying
// writer in batches. It is safe for concurrent use; each Write is kept
// whole, so the lines of a slog handler (one Write per record) never mix.
type Writer struct {
	out      io.Writer
	delay    time.Duration
	maxBytes int

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
	err   error // the first write error, reported by Flush
}

// New returns a Writer in front of out that writes once maxBytes have
// gathered or delay has passed since the first unwritten byte; zero
// values take the defaults.
func New(out io.Writer, delay time.Duration, maxBytes int) *Writer {
	if delay <= 0 {
		delay = DefaultDelay
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	w := &Writer{out: out, delay: delay, maxBytes: maxBytes}
	w.timer = time.AfterFunc(time.Hour, func() { _ = w.Flush() })
	w.timer.Stop()
	return w
}

// Write gathers p. It never fails: a failed write to the underlying
// writer is reported by the next Flush.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		w.timer.Reset(w.delay)
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= w.maxBytes {
		w.flushLocked()
	}
	return len(p), nil
}

// Flush writes what has gathered and reports the first write error seen.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
	return w.err
}

func (w *Writer) flushLocked() {
	w.timer.Stop()
	if len(w.buf) == 0 {
		return
	}
	if _, err := w.out.Write(w.buf); err != nil && w.err == nil {
		w.err = err
	}
	// Keep the buffer unless a burst grew it well past the batch size.
	if cap(w.buf) > 4*w.maxBytes {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
}

// FlushAbove returns h, writing to w, made to flush w after every record
// at level or above.
func FlushAbove(h slog.Handler, w *Writer, level slog.Leveler) slog.Handler {
	return &flushHandler{Handler: h, w: w, level: level}
}

type flushHandler struct {
	slog.Handler
	w     *Writer
	level slog.Leveler
}

func (h *flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level.Level() {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h *flushHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushHandler{Handler: h.Handler.WithAttrs(attrs), w: h.w, level: h.level}
}

func (h *flushHandler) WithGroup(name string) slog.Handler {
	return &flushHandler{Handler: h.Handler.WithGroup(name), w: h.w, level: h.level}
}
