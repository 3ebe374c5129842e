package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// call is one REST call; its request is built afresh for every attempt
// (see [Client.newRequest]), so a retry sends the same request again.
type call struct {
	op     Op
	method string
	path   string
	query  url.Values
	header http.Header
	body   []byte
	// precondition is what the request is conditional on, for reading a
	// 412.
	precondition Precondition
	// retryRule says whether a failed attempt may be sent again.
	retryRule retryRule
	// read consumes a success response's body; nil drains it. An error it
	// returns that is not a [ResponseError] or [StatusError] is a transport
	// failure.
	read func(*http.Response) error
	// acceptStatus, when set, hands non-success statuses it accepts to
	// read too (the batch endpoint reports bad lines on a 400).
	acceptStatus func(int) bool
	// mayHaveApplied is set once a retried attempt may have reached the
	// upstream and been applied.
	mayHaveApplied bool
	// status is the last attempt's HTTP status, zero without an answer.
	status int
}

func (c *Client) newRequest(ctx context.Context, cl *call, bodies *sentBodies) (*http.Request, error) {
	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream: building request: %w", err)
	}
	switch {
	case cl.body == nil:
	case len(cl.body) == 0:
		// An empty value: sent with Content-Length: 0, as in Fastly's
		// recorded traffic.
		req.Body, req.ContentLength = http.NoBody, 0
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	default:
		req.ContentLength = int64(len(cl.body))
		req.Body = bodies.open(cl.body)
		req.GetBody = func() (io.ReadCloser, error) { return bodies.open(cl.body), nil }
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	if token := c.tokenFor(ctx); token != "" {
		req.Header.Set("Fastly-Key", token)
	}
	req.Header.Set("User-Agent", c.userAgent)
	setRequestID(ctx, req)
	return req, nil
}

// maxErrorBody bounds how much of an error body is kept for logs.
const maxErrorBody = 512

// maxDrain bounds how much of an unread body is discarded so that the
// connection can be reused; a longer one closes it.
const maxDrain = 64 << 10

// success reports a 2xx status.
func success(status int) bool { return status >= 200 && status < 300 }

// run makes the call, retrying failed attempts the retry policy allows
// within the caller's deadline. It returns nil, the context's error, a
// [StatusError], a [TransportError], a [ResponseError] or an
// [UnknownOutcomeError].
func (c *Client) run(ctx context.Context, cl *call) error {
	for attempt := 1; ; attempt++ {
		err := c.observedAttempt(ctx, cl, attempt)
		if err == nil || isReservationError(err) {
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		wait, again := c.retry.decide(ctx, cl.retryRule, err, attempt)
		if !again {
			return unknownIfUnsafe(cl.op, cl.retryRule, err)
		}
		if !certainlyNotApplied(err) {
			cl.mayHaveApplied = true
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// attempt sends the call once.
func (c *Client) attempt(ctx context.Context, cl *call, attempt int) error {
	if err := c.budget.check(cl.op, cl.method, time.Now()); err != nil {
		return err
	}
	var bodies sentBodies
	// Returning only once the transport has let go of the request body:
	// callers hand in pooled and lent buffers (batch bodies, values)
	// and reuse them as soon as the call returns.
	defer bodies.wait()
	req, err := c.newRequest(ctx, cl, &bodies)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &TransportError{Op: cl.op, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	cl.status = resp.StatusCode
	c.budget.update(cl.method, resp.Header)
	if success(resp.StatusCode) || (cl.acceptStatus != nil && cl.acceptStatus(resp.StatusCode)) {
		if cl.read == nil {
			// The status already said the call succeeded; a broken (empty)
			// body after it does not undo that.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
			return nil
		}
		err := cl.read(resp)
		var se *StatusError
		var re *ResponseError
		switch {
		case err == nil, errors.As(err, &re), isReservationError(err):
			return err
		case errors.As(err, &se):
			se.Attempts = attempt
			return se
		}
		return &TransportError{Op: cl.op, Err: unwrapURLError(err)}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain)) // keep the connection reusable
	se := c.statusError(cl, resp, body)
	se.Attempts = attempt
	return se
}

// statusError builds the [StatusError] for a non-success answer to cl
// whose body starts with body; the caller sets Attempts.
func (c *Client) statusError(cl *call, resp *http.Response, body []byte) *StatusError {
	// A write's 429 can also spend the budget: wait for whichever ends
	// later, or the retry would be refused unsent.
	now := time.Now()
	return &StatusError{
		Op:           cl.op,
		Status:       resp.StatusCode,
		Precondition: cl.precondition,
		RetryAfter:   max(retryAfter(resp.Header, now), c.budget.wait(cl.method, now)),
		Body:         strings.TrimSpace(string(body[:min(len(body), maxErrorBody)])),
	}
}

// unwrapURLError drops *url.Error's wrapping, whose text carries the URL
// (and so the key) into logs.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// sentBodies are the readers of one attempt's request body: the first,
// and any the transport asks GetBody for to resend it on a new
// connection. An http.RoundTripper may still read a request body after
// it has returned the response (when the server answered before reading
// it all), and closes it when it is done, on every path; wait returns
// once every reader handed out is closed, so that the caller may reuse
// the body's buffer.
type sentBodies struct{ readers sync.WaitGroup }

func (s *sentBodies) open(b []byte) io.ReadCloser {
	s.readers.Add(1)
	return &sentBody{Reader: bytes.NewReader(b), closed: s.readers.Done}
}

func (s *sentBodies) wait() { s.readers.Wait() }

// sentBody is a request body that reports its closing once.
type sentBody struct {
	*bytes.Reader
	once   sync.Once
	closed func()
}

func (b *sentBody) Close() error {
	b.once.Do(b.closed)
	return nil
}
