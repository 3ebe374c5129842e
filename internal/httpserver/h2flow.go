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
// most maxStreams × streamWindow (32 MiB at the default 250 streams).
const streamWindow = 128 << 10

// http2Config allows maxStreams concurrent streams per connection
// ([DefaultMaxConcurrentStreams] when not positive), with the windows
// described above.
func http2Config(maxStreams int) *http.HTTP2Config {
	if maxStreams <= 0 {
		maxStreams = DefaultMaxConcurrentStreams
	}
	return &http.HTTP2Config{
		MaxConcurrentStreams:          maxStreams,
		MaxReceiveBufferPerStream:     streamWindow,
		MaxReceiveBufferPerConnection: maxStreams * streamWindow,
	}
}
