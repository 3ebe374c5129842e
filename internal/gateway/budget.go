package gateway

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/membudget"
)

// chargeRequests gives every request an account of the memory budget b
// (see package membudget) and charges its messages to it as they are
// read, before connect-go buffers them; the account is closed, releasing
// what it still holds, once the handler has written the answer. With no
// budget, requests pass untouched.
//
// A message is charged in one step when its size is known (from its
// envelope, or the Content-Length of a Connect unary request), for the
// bytes held while it is decoded: connect-go's buffer of the wire bytes,
// which grows by doubling to up to twice the message, and the decoded
// message: wireFactor times its size. A compressed message's
// decompressed size is known only once decompressed, so it is charged
// its compressed buffer plus wireFactor times the procedure's read
// limit, which bounds decompression.
func chargeRequests(b *membudget.Budget, limits Limits, next http.Handler) http.Handler {
	if b == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acct := membudget.NewAccount(b)
		defer acct.Close()
		r = httpserver.SetValue(r, membudget.AccountKey(), acct)
		if r.Body != nil && r.Body != http.NoBody && r.Method == http.MethodPost {
			body := &chargedBody{
				body: r.Body, acct: acct,
				readMax:   int64(readMaxBytes(r.URL.Path, int(limits.MaxValueBytes)+envelopeSlack)),
				enveloped: enveloped(r.Header.Get("Content-Type")),
				streaming: r.URL.Path == kvv1connect.KVStoreServiceBatchPutItemsProcedure,
				batch:     r.URL.Path == kvv1connect.KVStoreServiceBatchPutItemsProcedure || r.URL.Path == kvv1connect.KVStoreServicePutItemsProcedure,
				length:    r.ContentLength,
				encoded:   encoded(r.Header.Get("Content-Encoding")),
			}
			r.Body = body
			r = httpserver.SetValue(r, chargedBodyKey{}, body)
		}
		next.ServeHTTP(w, r)
	})
}

func encoded(contentEncoding string) bool {
	return contentEncoding != "" && contentEncoding != "identity"
}

// budgetError is what a request refused budget fails with.
func budgetError(err error) error {
	return connect.NewError(connect.CodeResourceExhausted, membudget.PublicMessage).WithCause(err)
}

// chargedBody charges each message of a request body before passing its
// bytes on, and releases the previous message's charge when the next is
// read: connect-go reads a stream's next message only when the handler
// asks for it, by which time the handler is done with the last one.
type chargedBody struct {
	body      io.ReadCloser
	acct      *membudget.Account
	readMax   int64
	enveloped bool
	length    int64 // Content-Length, -1 when unknown
	encoded   bool  // compressed as a whole (Connect unary)
	// streaming is set for a client stream, whose handler is done with a
	// message when it asks for the next. A unary request's one message
	// is held until the RPC ends, though connect-go reads on to the end
	// of the body as soon as it has it.
	streaming bool
	// batch is set for the batch writes, which copy their messages into
	// batch lines taking their charge along; other messages are settled
	// to their decoded size once received.
	batch bool

	started bool
	prefix  [5]byte
	pending []byte // prefix bytes not yet passed on
	left    int64  // payload bytes of the current message not yet passed on
	err     error  // how the body ended, once the prefix read found out
}

type chargedBodyKey struct{}

// prepare charges the next message before connect-go is asked for it,
// so that a request waiting for budget holds none of connect-go's
// buffers meanwhile.
func (c *chargedBody) prepare() error {
	if !c.enveloped {
		if c.started {
			return nil
		}
		c.started = true
		if err := c.acct.ChargeMessage(c.unaryCharge()); err != nil {
			return budgetError(err)
		}
		return nil
	}
	if len(c.pending) > 0 || c.left > 0 || c.err != nil {
		return nil
	}
	return c.nextMessage()
}

func (c *chargedBody) Read(p []byte) (int, error) {
	if err := c.prepare(); err != nil {
		return 0, err
	}
	if !c.enveloped {
		return c.body.Read(p)
	}
	if len(c.pending) == 0 && c.left == 0 {
		return 0, c.err
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.body.Read(p)
	c.left -= int64(n)
	if err == io.EOF && c.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// nextMessage releases the last message, reads the next one's prefix and
// charges the message.
func (c *chargedBody) nextMessage() error {
	if c.streaming {
		c.acct.ReleaseMessage()
	}
	n, err := io.ReadFull(c.body, c.prefix[:])
	if err != nil {
		// Hand on what came; connect-go sees the short read or the end
		// after it.
		c.pending, c.err = c.prefix[:n], err
		return nil
	}
	size := int64(binary.BigEndian.Uint32(c.prefix[1:]))
	if err := c.acct.ChargeMessage(c.messageCharge(size, c.prefix[0]&1 != 0)); err != nil {
		return budgetError(err)
	}
	c.pending, c.left = c.prefix[:], size
	return nil
}

// messageCharge is what an enveloped message of size bytes is charged.
// One over the read limit is refused and discarded unbuffered.
func (c *chargedBody) messageCharge(size int64, compressed bool) int64 {
	switch {
	case c.readMax > 0 && size > c.readMax:
		return 0
	case compressed:
		return 2*size + wireFactor*c.readMax
	}
	return wireFactor * size
}

// wireFactor is what a message is charged per byte: see chargeRequests.
const wireFactor = 3

// unaryCharge is what a Connect unary request is charged.
func (c *chargedBody) unaryCharge() int64 {
	size := c.readMax
	if c.length >= 0 && c.length < size {
		size = c.length
	}
	if c.encoded {
		return 2*size + wireFactor*c.readMax
	}
	return wireFactor * size
}

func (c *chargedBody) Close() error { return c.body.Close() }

// bindBudget lets the RPC's account wait for budget until the RPC's
// deadline, once boundDeadlines has set it, and charges each request
// message before connect-go reads it.
func bindBudget(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		membudget.AccountFrom(ctx).Bind(ctx)
		if body, ok := ctx.Value(chargedBodyKey{}).(*chargedBody); ok {
			stream = chargingStream{stream, body}
		}
		return next(ctx, spec, stream)
	}
}

type chargingStream struct {
	connect.ServerStream
	body *chargedBody
}

func (s chargingStream) Receive(msg any) error {
	if err := s.body.prepare(); err != nil {
		return err
	}
	err := s.ServerStream.Receive(msg)
	if m, ok := msg.(proto.Message); ok && err == nil && !s.body.batch {
		s.body.acct.SettleMessage(int64(proto.Size(m)))
	}
	return err
}
