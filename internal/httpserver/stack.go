package httpserver

import "net/http"

// handlerStackBytes is how much goroutine stack an HTTP/2 request's
// handler is given up front. Over HTTP/2 every request runs on a goroutine
// of its own, which starts with a small stack; kvgate's chain of
// middleware, interceptors, codecs and the upstream call is deep enough
// that the stack then grows by doubling, several times, each time copying
// the whole (deep) stack so far. Measured on gRPC GetItem calls that
// copying was a tenth of kvgate's CPU. Growing the stack once, at the top
// of the handler where almost nothing is on it yet, costs one small copy
// instead. HTTP/1.1 requests reuse their connection's goroutine, whose
// stack has grown already.
const handlerStackBytes = 16 << 10

// growStackForHTTP2 grows the stack of HTTP/2 requests' goroutines before
// calling next.
func growStackForHTTP2(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			growStack(0)
		}
		next.ServeHTTP(w, r)
	})
}

// growStack has a frame of about handlerStackBytes, so calling it makes
// the runtime grow the goroutine's stack to fit it, once; the stack keeps
// that size while the goroutine runs.
//
//go:noinline
func growStack(i int) byte {
	var frame [handlerStackBytes - 4<<10]byte
	frame[i] = 1 // written and read, so the frame is not optimised away
	return frame[i/2]
}
