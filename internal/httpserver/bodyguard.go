package httpserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// ErrBodyStalled is the error body reads return once the client sent
// nothing for the body stall timeout ([Limits.BodyStallTimeout]).
var ErrBodyStalled = errors.New("request body stalled: the client sent nothing for too long")

// longAgo is a read deadline in the past: reads fail at once.
var longAgo = time.Unix(1, 0)

// guardKey carries a request's bodyGuard in its context.
type guardKey struct{}

// EndBodyReadsWhenDone ends the request body reads of the request ctx
// belongs to once ctx is done, as they end when the request's own context
// is: a handler whose deadline is shorter than the connection's life (an
// RPC deadline) calls it so that a read blocked on a silent client fails
// at the deadline instead of outliving it. The returned stop undoes it,
// as context.AfterFunc's does. Outside Run's requests it does nothing.
func EndBodyReadsWhenDone(ctx context.Context) (stop func() bool) {
	g, ok := ctx.Value(guardKey{}).(*bodyGuard)
	if !ok {
		return func() bool { return false }
	}
	return context.AfterFunc(ctx, func() { g.end(context.Cause(ctx)) })
}

// EndBodyReads ends the request body reads of the request ctx belongs to,
// those under way and those to come, with cause: for a handler that has
// refused the request and reads no more of it. The connection is then not
// reused for another request (HTTP/1.1) or the stream is reset (HTTP/2),
// rather than net/http waiting for the rest of the body. Outside Run's
// requests it does nothing.
func EndBodyReads(ctx context.Context, cause error) {
	if g, ok := ctx.Value(guardKey{}).(*bodyGuard); ok {
		g.end(cause)
	}
}

// guardBodies bounds every request body read: a read ends once the request
// context ends (a client stream waiting for its next message would
// otherwise not notice that the server is shutting down until the
// connection is closed, too late to answer with what it did), once
// EndBodyReadsWhenDone's context ends, and once the client has sent
// nothing for stall (when positive).
func guardBodies(next http.Handler, stall time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := &bodyGuard{rc: http.NewResponseController(w), body: r.Body, stall: stall, http1: r.ProtoMajor == 1}
		hasBody := r.Body != nil && r.Body != http.NoBody
		if hasBody && stall > 0 {
			if g.http1 {
				// Armed before the handler reads at all: net/http itself
				// reads what is left of an unread HTTP/1.1 body before
				// answering, and that read must not wait forever either.
				_ = g.rc.SetReadDeadline(time.Now().Add(stall))
			} else {
				g.timer = time.AfterFunc(stall, g.onStallTimer)
				g.timer.Stop()
			}
		}
		reqCtx := r.Context() // not the scope: SetValue writes to that
		stop := context.AfterFunc(reqCtx, func() { g.end(context.Cause(reqCtx)) })
		defer func() {
			stop()
			g.handlerReturned()
		}()
		// The request's scope (see SetValue) carries the guard, so the
		// request is copied once here and not again by the layers within.
		r = r.WithContext(&scopeCtx{Context: r.Context(), guard: g})
		if hasBody {
			r.Body = g
		}
		next.ServeHTTP(w, r)
	})
}

// bodyGuard is a request body whose reads can be ended from outside and
// fail when the client stalls. On HTTP/1.1 the stall bound is the
// connection's read deadline, pushed forward on every read (cheap there);
// on HTTP/2, where each deadline change is a message to the connection's
// goroutine, it is a timer armed while a read waits, which ends the
// stream's reads when it fires.
type bodyGuard struct {
	rc    *http.ResponseController
	body  io.ReadCloser
	stall time.Duration
	http1 bool
	timer *time.Timer // HTTP/2 with a stall bound only

	mu        sync.Mutex
	ended     error     // why reads ended; nil while they may go on
	readSince time.Time // when the read under way began; zero between reads
	sawEOF    bool
	returned  bool // the handler returned: w must not be touched
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	if err := g.beginRead(); err != nil {
		return 0, err
	}
	n, err := g.body.Read(p)
	return n, g.endRead(err)
}

func (g *bodyGuard) Close() error { return g.body.Close() }

func (g *bodyGuard) beginRead() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended != nil {
		return g.ended
	}
	if g.stall > 0 && !g.sawEOF {
		g.readSince = time.Now()
		if g.http1 {
			_ = g.rc.SetReadDeadline(g.readSince.Add(g.stall))
		} else {
			g.timer.Reset(g.stall)
		}
	}
	return nil
}

// endRead accounts for a read's outcome and returns the error to report.
func (g *bodyGuard) endRead(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	waited := time.Since(g.readSince)
	g.readSince = time.Time{}
	if g.timer != nil {
		g.timer.Stop()
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if g.http1 && g.stall > 0 && !g.sawEOF {
			// net/http now watches the idle connection for the client
			// going away; a deadline left set would fail that watch.
			_ = g.rc.SetReadDeadline(time.Time{})
		}
		g.sawEOF = true
	case g.stall > 0 && waited >= g.stall && errors.Is(err, os.ErrDeadlineExceeded):
		// Before g.ended: on HTTP/1.1 the failed read also cancels the
		// request's context, which may have ended reads already.
		g.ended = ErrBodyStalled
		err = ErrBodyStalled
	case g.ended != nil:
		err = g.ended
	}
	return err
}

// onStallTimer ends reads when the read under way has waited the whole
// stall timeout (the timer may fire just as a read returns).
func (g *bodyGuard) onStallTimer() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.readSince.IsZero() || time.Since(g.readSince) < g.stall {
		return
	}
	g.endLocked(ErrBodyStalled)
}

// end ends reads, those under way and those to come, reporting cause.
func (g *bodyGuard) end(cause error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endLocked(cause)
}

func (g *bodyGuard) endLocked(cause error) {
	if g.ended != nil || g.returned {
		return
	}
	if cause == nil {
		cause = context.Canceled
	}
	g.ended = cause
	_ = g.rc.SetReadDeadline(longAgo)
}

// handlerReturned stops the guard before the handler's ResponseWriter
// goes out of use. The HTTP/1.1 stall deadline stays, so that net/http's
// own read of an unread body remainder cannot wait on a silent client.
func (g *bodyGuard) handlerReturned() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.returned = true
	if g.timer != nil {
		g.timer.Stop()
	}
}
