package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"

	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/upstream"
)

// RequestIDHeader carries a request id in, back to the caller and on to
// the upstream.
const RequestIDHeader = upstream.RequestIDHeader

// maxRequestIDBytes bounds a request id a caller may choose: enough for a
// UUID or a W3C trace id with room to spare, short enough for every log
// line.
const maxRequestIDBytes = 128

// RequestIDs is the outermost HTTP middleware: it gives every request an
// id (the caller's X-Request-Id when valid, else the trace id of its
// traceparent, else a random one), returns it as X-Request-Id, and puts it
// in the request's context, where upstream requests (see
// upstream.WithRequestID) and log lines (see [LogHandler]) find it.
func RequestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := requestIDOf(r.Header)
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, httpserver.SetValue(r, upstream.RequestIDKey(), id))
	})
}

// requestIDOf picks a request's id from its headers, or makes one.
func requestIDOf(h http.Header) string {
	if id := h.Get(RequestIDHeader); validRequestID(id) {
		return id
	}
	if id, ok := traceIDOf(h.Get("Traceparent")); ok {
		return id
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// validRequestID accepts 1 to maxRequestIDBytes visible ASCII characters:
// nothing that could break a log line or a header on its way upstream.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDBytes {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// traceIDOf returns the trace id of a W3C traceparent header
// (version-traceid-parentid-flags), when it is well formed and not all
// zeros.
func traceIDOf(traceparent string) (string, bool) {
	parts := strings.Split(strings.TrimSpace(traceparent), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || parts[0] == "ff" {
		return "", false
	}
	id := parts[1]
	if _, err := hex.DecodeString(id); err != nil || id != strings.ToLower(id) || strings.Trim(id, "0") == "" {
		return "", false
	}
	return id, true
}

// LogHandler wraps h so that every record logged with a context that
// carries a request id gets a request_id attribute.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(requestIDHandler); ok {
		return h
	}
	return requestIDHandler{h}
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := upstream.RequestID(ctx); id != "" {
		rec = rec.Clone()
		rec.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
