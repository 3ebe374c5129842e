package httpserver

import "net/http"

// HTTP/2 flow control. net/http returns a connection's receive window
// only as handlers read their request bodies, so with its defaults (1 MiB
// for the connection and 1 MiB for each stream) a few streams that stop
// reading, as a stream waiting for memory budget or for its batch writes
// does, would hold the whole connection's window and stall the other
// streams on it, including those that hold the budget the first wait
// for: a deadlock that only the deadlines end. With the connection's
// window as large as all its streams' together, a stream that stops
// reading stops only itself. What a connection holds unread is then at
// most maxStreams × streamWindow (32 MiB).
const (
	maxStreams   = 250 // net/http's default, made explicit for the product below
	streamWindow = 128 << 10
)

func http2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          maxStreams,
		MaxReceiveBufferPerStream:     streamWindow,
		MaxReceiveBufferPerConnection: maxStreams * streamWindow,
	}
}
