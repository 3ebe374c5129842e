package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/httpserver"
)

// readMaxBytes is the largest request message procedure accepts;
// valueMessage is one value's limit plus room for the other fields.
func readMaxBytes(procedure string, valueMessage int) int {
	switch procedure {
	case kvv1connect.KVStoreServicePutItemProcedure:
		return valueMessage
	case kvv1connect.KVStoreServiceBatchPutItemsProcedure, kvv1connect.KVStoreServicePutItemsProcedure:
		// Per message; a stream may carry any number of them.
		return max(valueMessage, batchMessageBytes)
	case kvv1connect.KVStoreServiceGetItemsProcedure:
		return keysMessageBytes
	case kvv1connect.KVStoreServiceWatchItemsProcedure:
		// A resumed prefix watch names its known state: up to
		// service.DefaultWatchMaxKeys keys of up to 1 KiB each, beside up
		// to 1,000 watched keys.
		return watchMessageBytes
	}
	return defaultReadMaxBytes
}

// keysMessageBytes bounds a request naming up to 1,000 keys of up to 1 KiB:
// about 1 MiB in binary, and up to six times that in JSON, which escapes a
// control character as six.
const keysMessageBytes = 8 << 20

// watchMessageBytes bounds a WatchItems request.
const watchMessageBytes = 16 << 20

// errMessageTooLarge ends the body reads of a refused request.
var errMessageTooLarge = errors.New("request message larger than the procedure accepts")

// refuseOversizeMessages refuses a request message that declares more
// bytes than its procedure accepts as soon as it declares them: in its
// envelope's length prefix (gRPC, gRPC-Web, Connect streaming) or in the
// Content-Length of a Connect unary request. connect-go answers
// RESOURCE_EXHAUSTED for such a message, but only after reading and
// discarding every byte declared, so a client claiming 2 GiB and sending
// 1 KiB would get no answer while it held the request open. Here the
// body ends right after the oversize prefix, connect-go answers at once,
// and the rest of the body is never read.
func refuseOversizeMessages(next http.Handler, valueMessage int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Body != nil && r.Body != http.NoBody {
			limit := readMaxBytes(r.URL.Path, valueMessage)
			ct := r.Header.Get("Content-Type")
			switch {
			case enveloped(ct):
				r.Body = &envelopeLimit{body: r.Body, ctx: r.Context(), limit: uint32(limit)}
			case r.ContentLength > int64(limit):
				httpserver.EndBodyReads(r.Context(), errMessageTooLarge)
				// connect-go turns this error into RESOURCE_EXHAUSTED.
				r.Body = refusedBody{ReadCloser: r.Body, err: &http.MaxBytesError{Limit: int64(limit)}}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// enveloped reports the content types whose bodies are length-prefixed
// messages. gRPC-Web's text (base64) form is left to connect-go.
func enveloped(contentType string) bool {
	return strings.HasPrefix(contentType, "application/connect+") ||
		(strings.HasPrefix(contentType, "application/grpc") && !strings.HasPrefix(contentType, "application/grpc-web-text"))
}

// refusedBody fails every read with err.
type refusedBody struct {
	io.ReadCloser
	err error
}

func (b refusedBody) Read([]byte) (int, error) { return 0, b.err }

// envelopeLimit follows the length prefixes (a flags byte and a 4-byte
// big-endian length) of the messages in a body and ends the body right
// after a prefix that declares more than limit bytes.
type envelopeLimit struct {
	body  io.ReadCloser
	ctx   context.Context
	limit uint32

	prefix      [5]byte
	prefixSeen  int
	payloadLeft uint32
	refused     bool
}

func (e *envelopeLimit) Read(p []byte) (int, error) {
	if e.refused {
		return 0, io.EOF
	}
	n, err := e.body.Read(p)
	for i := 0; i < n; {
		if e.payloadLeft > 0 {
			k := min(uint32(n-i), e.payloadLeft)
			e.payloadLeft -= k
			i += int(k)
			continue
		}
		e.prefix[e.prefixSeen] = p[i]
		e.prefixSeen++
		i++
		if e.prefixSeen < len(e.prefix) {
			continue
		}
		e.prefixSeen = 0
		e.payloadLeft = binary.BigEndian.Uint32(e.prefix[1:])
		if e.payloadLeft > e.limit {
			// connect-go reads the prefix, then discards the declared
			// length up to the end of the body: end the body here.
			e.refused = true
			httpserver.EndBodyReads(e.ctx, errMessageTooLarge)
			return i, nil
		}
	}
	return n, err
}

func (e *envelopeLimit) Close() error { return e.body.Close() }

// cutOffBodyReads ends an RPC's request body reads at its deadline: a read
// blocked on a client that stopped sending would otherwise outlive the
// deadline, since connect-go's reads do not watch the context. A read the
// server cut off because the client stalled fails with DEADLINE_EXCEEDED,
// as an HTTP 408 would.
func cutOffBodyReads(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		stop := httpserver.EndBodyReadsWhenDone(ctx)
		defer stop()
		err := next(ctx, spec, stream)
		if errors.Is(err, httpserver.ErrBodyStalled) {
			return connect.NewError(connect.CodeDeadlineExceeded,
				"the request stalled: the client sent nothing for longer than the server waits").WithCause(err)
		}
		return err
	}
}
