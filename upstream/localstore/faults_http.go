package localstore

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// applyFaults serves a request of the given kind through next with the
// current faults: the delay first, then the failure drawn for it, if any.
func (s *Store) applyFaults(w http.ResponseWriter, r *http.Request, kind RequestKind, next http.Handler) {
	f := s.faults.Load()
	if !f.active() || (f.Kinds != 0 && !f.Kinds.Has(kind)) {
		next.ServeHTTP(w, r)
		return
	}
	ff, delay, o := s.draw()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			// The client is gone, or the server is shutting down; the
			// answer is for the latter.
			writeError(w, http.StatusServiceUnavailable, "Request cancelled", "the request ended during the injected latency")
			return
		}
	}
	s.serveFault(&ff, o, next, w, r)
}

// serveFault injects failure o into a request, or none, and handles it.
func (s *Store) serveFault(f *Faults, o outcome, next http.Handler, w http.ResponseWriter, r *http.Request) {
	counts := &s.faultState.counts
	switch o {
	case outcomeDropBeforeHandling:
		counts[o].Add(1)
		dropConn(w, r)
		return
	case outcomeRateLimited:
		counts[o].Add(1)
		wait := f.RetryAfter
		if wait <= 0 {
			wait = time.Second
		}
		h := w.Header()
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(wait), 10))
		h.Set("Fastly-RateLimit-Remaining", "0")
		h.Set("Fastly-RateLimit-Reset", strconv.FormatInt(resetEpoch(time.Now(), wait), 10))
		writeError(w, http.StatusTooManyRequests, "Too many requests", "injected fault: rate limited")
		return
	case outcomeUnavailable:
		counts[o].Add(1)
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(f.RetryAfter), 10))
		}
		writeError(w, http.StatusServiceUnavailable, "Service unavailable", "injected fault: unavailable")
		return
	case outcomeServerError:
		counts[o].Add(1)
		writeError(w, http.StatusInternalServerError, "Internal server error", "injected fault: server error")
		return
	case outcomeDropBeforeResponse:
		next.ServeHTTP(&discardWriter{header: http.Header{}}, r)
		counts[o].Add(1)
		dropConn(w, r)
		return
	}
	cut := o == outcomeDropMidBody
	if !cut && f.SlowBody <= 0 {
		next.ServeHTTP(w, r)
		return
	}
	fw := &faultWriter{ResponseWriter: w, ctx: r.Context(), cut: cut, slow: f.SlowBody}
	next.ServeHTTP(fw, r)
	if fw.dropped {
		if fw.wasCut {
			counts[outcomeDropMidBody].Add(1)
		}
		// Whatever was sent must not pass for a whole response.
		panic(http.ErrAbortHandler)
	}
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// resetEpoch is the Unix second at which a wait from now is over, rounded
// up.
func resetEpoch(now time.Time, wait time.Duration) int64 {
	end := now.Add(wait)
	secs := end.Unix()
	if end.After(time.Unix(secs, 0)) {
		secs++
	}
	return secs
}

// dropConn drops a request's connection without sending anything: an
// HTTP/1 connection is hijacked and closed; an HTTP/2 stream, which cannot
// be hijacked, is reset by aborting the handler.
func dropConn(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// discardWriter takes a response and sends nothing.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

var errDropped = errors.New("localstore: injected fault: response dropped")

// faultWriter cuts a response's body after half its first write (cut), or
// sends it slowly (slow), or both.
type faultWriter struct {
	http.ResponseWriter
	ctx  context.Context
	cut  bool
	slow time.Duration
	// started is set once the headers have been flushed.
	started bool
	// wasCut is set once the body has been cut; dropped once the rest of
	// the response must not be sent, because it was cut or the request
	// ended while the body trickled.
	wasCut, dropped bool
}

func (fw *faultWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }

func (fw *faultWriter) Write(p []byte) (int, error) {
	if fw.dropped {
		return 0, errDropped
	}
	if len(p) == 0 {
		return fw.ResponseWriter.Write(p)
	}
	whole := len(p)
	if fw.cut {
		p = p[:len(p)/2]
	}
	n, err := fw.write(p)
	if err != nil {
		fw.dropped = true
		return n, err
	}
	if fw.cut {
		fw.flush()
		fw.wasCut, fw.dropped = true, true
		return n, errDropped
	}
	return whole, nil
}

// write sends p, in pieces after delays when the body is slow.
func (fw *faultWriter) write(p []byte) (int, error) {
	if fw.slow <= 0 {
		return fw.ResponseWriter.Write(p)
	}
	if !fw.started {
		fw.started = true
		fw.flush() // the headers go out at once; only the body is slow
	}
	var written int
	for len(p) > 0 {
		t := time.NewTimer(fw.slow)
		select {
		case <-t.C:
		case <-fw.ctx.Done():
			t.Stop()
			return written, fw.ctx.Err()
		}
		piece := p[:min(len(p), SlowBodyPiece)]
		n, err := fw.ResponseWriter.Write(piece)
		written += n
		if err != nil {
			return written, err
		}
		fw.flush()
		p = p[n:]
	}
	return written, nil
}

func (fw *faultWriter) flush() { _ = http.NewResponseController(fw.ResponseWriter).Flush() }

// Flush sends what was written so far.
func (fw *faultWriter) Flush() {
	if !fw.dropped {
		fw.flush()
	}
}
