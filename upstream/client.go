// Package upstream is a typed client for Fastly's KV Store item REST API
// (/resources/stores/kv/{store_id}/...). It speaks the wire form Fastly's
// recorded traffic shows, retries what is safe to retry, and classifies
// every failure as a [Kind] (not found, key exists, generation mismatch,
// rate limited, unavailable, outcome unknown, ...) on typed errors that
// keep the details. It knows nothing of protobuf or Connect.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is Fastly's API endpoint.
const DefaultBaseURL = "https://api.fastly.com"

// DefaultMaxIdleConns is the maxConns of the HTTP client a [ClientConfig]
// without one gets, and the value to pass [NewHTTPClient] for the same pool.
// It is well above the calls a gateway has in flight: with the idle limit
// equal to the concurrency, a connection returned a moment after another
// call dialed is closed, and over HTTP/1.1 the pool keeps churning. An idle
// connection costs a socket until IdleConnTimeout closes it.
const DefaultMaxIdleConns = 256

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the API endpoint, [DefaultBaseURL] when empty.
	BaseURL string
	// Token is sent as the Fastly-Key header. The local store ignores it.
	Token string
	// HTTPClient makes the requests; NewHTTPClient(DefaultMaxIdleConns)
	// when nil. Its transport must close every request body it is given,
	// as http.RoundTripper's contract says: a write returns only once it
	// has, so that callers may reuse the body's buffer.
	HTTPClient *http.Client
	// UserAgent is sent as User-Agent.
	UserAgent string
	// MaxValueBytes bounds the value a GET reads; [DefaultMaxValueBytes] when
	// zero. A larger value fails rather than exhausting memory.
	MaxValueBytes int64
	// Retry is the retry policy; [DefaultRetryPolicy] fills the fields
	// left zero.
	Retry RetryPolicy
	// Observer, when set, is told about every attempt.
	Observer Observer
	// ReserveValue, when set, is called before a GET's value of n bytes
	// is read, with the call's context, to hold memory for it; see
	// [ReservationError].
	ReserveValue func(ctx context.Context, n int64) error
	// ValueBuffer, when set, returns the buffer of length n a GET's value
	// of n bytes is read into, for the call's context; the caller may
	// lend pooled buffers this way and take them back once the value is
	// no longer used. Every byte of it is overwritten, or the buffer is
	// dropped. A fresh buffer is made when nil.
	ValueBuffer func(ctx context.Context, n int) []byte
	// WriteBudget, when positive, is the most non-read requests (PUT,
	// DELETE, batch PUT; retries included) the client sends in any rolling
	// hour; a write past it fails at once, not sent, with a 429
	// [StatusError] marked OwnBudget and the time until one is free. Zero
	// sets no budget of kvgate's own; Fastly's, learned from its answers,
	// is kept either way.
	WriteBudget int64
}

// Client calls the KV Store REST endpoints. It is safe for concurrent use.
type Client struct {
	base      string
	token     string
	hc        *http.Client
	userAgent string
	maxValue  int64
	retry     RetryPolicy
	budget    *rateBudget
	observer  Observer
	reserve   func(ctx context.Context, n int64) error
	valueBuf  func(ctx context.Context, n int) []byte
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: base URL %q is not an http(s) URL", base)
	}
	c := &Client{
		base:      strings.TrimSuffix(u.String(), "/"),
		token:     cfg.Token,
		hc:        cfg.HTTPClient,
		userAgent: cfg.UserAgent,
		maxValue:  cfg.MaxValueBytes,
		retry:     cfg.Retry.withDefaults(),
		budget:    newRateBudgetLimit(cfg.WriteBudget),
		observer:  cfg.Observer,
		reserve:   cfg.ReserveValue,
		valueBuf:  cfg.ValueBuffer,
	}
	if c.hc == nil {
		c.hc = NewHTTPClient(DefaultMaxIdleConns)
	}
	if c.userAgent == "" {
		c.userAgent = "kvgate"
	}
	if c.maxValue <= 0 {
		c.maxValue = DefaultMaxValueBytes
	}
	return c, nil
}

// NewHTTPClient returns an HTTP client for the upstream: pooled keep-alive
// connections (up to maxConns idle per host, so concurrent RPCs reuse
// connections instead of dialing), and timeouts on dialing, TLS and idle
// connections. It sets no overall timeout: every request carries the
// caller's context, and with it the caller's deadline.
func NewHTTPClient(maxConns int) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          maxConns * 2,
			MaxIdleConnsPerHost:   maxConns,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		// The API never redirects; following one would resend Fastly-Key.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Item is an item as a GET returns it.
type Item struct {
	Value    []byte
	Metadata string
	// Generation is the item's generation marker.
	Generation uint64
	// LastModified is zero when the response carried no Last-Modified.
	LastModified time.Time
	// Size is the value's length in bytes: len(Value) after GetItem, and
	// Fastly's Stored-Content-Length after HeadItem, -1 when that answer
	// did not say.
	Size int64
}

// PutMode selects Fastly's add, append or prepend flags.
type PutMode int

// The put modes; they exclude each other.
const (
	PutOverwrite PutMode = iota
	PutAdd
	PutAppend
	PutPrepend
)

// PutOptions are the documented options of a single-item PUT.
type PutOptions struct {
	Mode            PutMode
	BackgroundFetch bool
	// IfGenerationMatch, when set, is sent as if-generation-match.
	IfGenerationMatch *uint64
	// Metadata is sent as the metadata header when not empty. Fastly
	// replaces the metadata on every write, so empty clears it.
	Metadata string
	// TimeToLive is sent as time_to_live_sec when positive, rounded up to
	// whole seconds so a short TTL never becomes none.
	TimeToLive time.Duration
}

// DeleteOptions are the documented options of a DELETE.
type DeleteOptions struct {
	Force             bool
	IfGenerationMatch *uint64
}

// Consistency selects the list endpoint's consistency parameter.
type Consistency int

// The consistency levels; the zero value is strong.
const (
	ConsistencyStrong Consistency = iota
	ConsistencyEventual
)

func (c Consistency) String() string {
	if c == ConsistencyEventual {
		return "eventual"
	}
	return "strong"
}

// ListOptions are the list endpoint's query parameters.
type ListOptions struct {
	// Prefix must pass CheckPrefixQuery; Fastly refuses some characters.
	Prefix string
	// Cursor is a next_cursor from an earlier page.
	Cursor string
	// Limit is the page size; zero sends none (Fastly's default is 1000).
	Limit       int
	Consistency Consistency
}

// KeyPage is one page of a listing.
type KeyPage struct {
	Keys []string
	// NextCursor is empty on the last page.
	NextCursor string
}

// GetItem reads one item. Reads are retried, body included.
func (c *Client) GetItem(ctx context.Context, storeID, key string) (*Item, error) {
	var item *Item
	err := c.run(ctx, &call{
		op: OpGet, method: http.MethodGet, path: itemPath(storeID, key),
		read: func(resp *http.Response) error {
			it, err := itemHeaders(OpGet, resp)
			if err != nil {
				return err
			}
			if err := c.reserveValue(ctx, resp.ContentLength); err != nil {
				return err
			}
			if it.Value, err = c.readValue(ctx, resp); err != nil {
				return err
			}
			it.Size = int64(len(it.Value))
			item = it
			return nil
		},
	})
	return item, err
}

// HeadItem reads one item's metadata, generation, last-modified time and
// size without its value, with a HEAD. Reads are retried.
func (c *Client) HeadItem(ctx context.Context, storeID, key string) (*Item, error) {
	var item *Item
	err := c.run(ctx, &call{
		op: OpHead, method: http.MethodHead, path: itemPath(storeID, key),
		read: func(resp *http.Response) error {
			it, err := itemHeaders(OpHead, resp)
			if err != nil {
				return err
			}
			// Fastly sends the stored value's length in its own header
			// (Content-Length on a HEAD is what a GET would carry, which
			// is the same length when present).
			it.Size = -1
			if n, err := strconv.ParseInt(resp.Header.Get("Stored-Content-Length"), 10, 64); err == nil && n >= 0 {
				it.Size = n
			} else if resp.ContentLength >= 0 {
				it.Size = resp.ContentLength
			}
			item = it
			return nil
		},
	})
	return item, err
}

// itemHeaders reads the item headers Fastly sends on a GET or HEAD:
// Generation (required, as go-fastly requires it), Metadata and
// Last-Modified.
func itemHeaders(op Op, resp *http.Response) (*Item, error) {
	it := &Item{Metadata: resp.Header.Get("Metadata")}
	var err error
	if it.Generation, err = strconv.ParseUint(resp.Header.Get("Generation"), 10, 64); err != nil {
		return nil, &ResponseError{Op: op, Reason: "missing or invalid Generation header"}
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			it.LastModified = t
		}
	}
	return it, nil
}

// readValue reads a GET body into one buffer sized from Content-Length, so
// a value is held once, not grown by doubling copies.
func (c *Client) readValue(ctx context.Context, resp *http.Response) ([]byte, error) {
	n := resp.ContentLength
	if n > c.maxValue {
		return nil, &ResponseError{Op: OpGet, Reason: fmt.Sprintf("value of %d bytes exceeds the limit of %d", n, c.maxValue)}
	}
	if n >= 0 {
		var buf []byte
		if c.valueBuf != nil {
			buf = c.valueBuf(ctx, int(n))
		} else {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, c.maxValue+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > c.maxValue {
		return nil, &ResponseError{Op: OpGet, Reason: fmt.Sprintf("value exceeds the limit of %d bytes", c.maxValue)}
	}
	return buf.Bytes(), nil
}

// PutItem inserts or updates one item. Fastly's answer carries no
// generation, so none is returned. A plain overwrite is retried; an add,
// append, prepend or compare-and-set is retried only when Fastly certainly
// did not apply it, and otherwise fails with an [UnknownOutcomeError] when
// it may have.
func (c *Client) PutItem(ctx context.Context, storeID, key string, value []byte, opts PutOptions) error {
	cl := &call{
		op: OpPut, method: http.MethodPut, path: itemPath(storeID, key),
		query: url.Values{}, header: http.Header{}, body: value,
	}
	switch opts.Mode {
	case PutAdd:
		cl.query.Set("add", "true")
		cl.precondition, cl.retryRule = PreconditionAbsent, retryIfNotApplied
	case PutAppend:
		cl.query.Set("append", "true")
		cl.retryRule = retryIfNotApplied
	case PutPrepend:
		cl.query.Set("prepend", "true")
		cl.retryRule = retryIfNotApplied
	}
	if opts.BackgroundFetch {
		cl.query.Set("background_fetch", "true")
	}
	cl.header.Set("Content-Type", "application/octet-stream")
	if opts.IfGenerationMatch != nil {
		cl.header.Set("If-Generation-Match", strconv.FormatUint(*opts.IfGenerationMatch, 10))
		cl.precondition, cl.retryRule = PreconditionGeneration, retryIfNotApplied
	}
	if opts.Metadata != "" {
		cl.header.Set("Metadata", opts.Metadata)
	}
	if secs := ttlSeconds(opts.TimeToLive); secs > 0 {
		// Fastly spells this header with underscores; set it verbatim.
		cl.header["time_to_live_sec"] = []string{strconv.FormatInt(secs, 10)}
	}
	return c.run(ctx, cl)
}

// DeleteItem deletes one item. A plain delete is retried, and a retry that
// finds the key gone has succeeded; a compare-and-set delete is treated
// like a compare-and-set write.
func (c *Client) DeleteItem(ctx context.Context, storeID, key string, opts DeleteOptions) error {
	cl := &call{op: OpDelete, method: http.MethodDelete, path: itemPath(storeID, key), query: url.Values{}, header: http.Header{}}
	if opts.Force {
		cl.query.Set("force", "true")
	}
	if opts.IfGenerationMatch != nil {
		cl.header.Set("If-Generation-Match", strconv.FormatUint(*opts.IfGenerationMatch, 10))
		cl.precondition, cl.retryRule = PreconditionGeneration, retryIfNotApplied
	}
	err := c.run(ctx, cl)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound && cl.mayHaveApplied && cl.retryRule == retryAlways {
		// An earlier attempt may have deleted it; either way it is gone.
		return nil
	}
	return err
}

// listResponse is the list endpoint's body. meta.limit is a number and the
// other meta fields are strings; only next_cursor matters here.
type listResponse struct {
	Data []string `json:"data"`
	Meta struct {
		NextCursor string `json:"next_cursor"`
	} `json:"meta"`
}

// maxListBody bounds a list page's body: 1000 keys of 1 KiB, escaped.
const maxListBody = 16 << 20

// ListKeys fetches one page of keys. The consistency parameter is always
// sent, as Fastly's own client does. Pages are reads: retried.
func (c *Client) ListKeys(ctx context.Context, storeID string, opts ListOptions) (*KeyPage, error) {
	q := url.Values{}
	q.Set("consistency", opts.Consistency.String())
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	var page *KeyPage
	err := c.run(ctx, &call{
		op: OpList, method: http.MethodGet, path: storePath(storeID) + "/keys", query: q,
		read: func(resp *http.Response) error {
			// Read the whole page first: a broken connection is then a
			// transport failure (retried), not a parse error.
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody))
			if err != nil {
				return err
			}
			page, err = ParseListResponse(bytes.NewReader(body))
			return err
		},
	})
	return page, err
}

// ParseListResponse decodes a list endpoint body. A missing or empty
// meta.next_cursor marks the last page. [Client.ListKeys] reads its pages
// with it. It is exported on purpose, so that a server standing in for
// Fastly (the local store's tests) can check its pages read the way the
// client reads them.
func ParseListResponse(r io.Reader) (*KeyPage, error) {
	var body listResponse
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return nil, &ResponseError{Op: OpList, Reason: "body is not a key listing: " + err.Error()}
	}
	return &KeyPage{Keys: body.Data, NextCursor: body.Meta.NextCursor}, nil
}

func storePath(storeID string) string {
	return "/resources/stores/kv/" + url.PathEscape(storeID)
}

// itemPath escapes the key as one path segment, so "/" travels as %2F.
func itemPath(storeID, key string) string {
	return storePath(storeID) + "/keys/" + url.PathEscape(key)
}
