// Package upstream is a typed client for Fastly's KV Store item REST API
// (/resources/stores/kv/{store_id}/...). It speaks the wire form Fastly's
// recorded traffic shows and turns statuses into typed errors. It knows
// nothing of protobuf or Connect.
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

// Config configures a Client.
type Config struct {
	// BaseURL is the API endpoint, DefaultBaseURL when empty.
	BaseURL string
	// Token is sent as the Fastly-Key header. The local store ignores it.
	Token string
	// HTTPClient makes the requests; NewHTTPClient(64) when nil.
	HTTPClient *http.Client
	// UserAgent is sent as User-Agent.
	UserAgent string
	// MaxValueBytes bounds the value a GET reads; DefaultMaxValueBytes when
	// zero. A larger value fails rather than exhausting memory.
	MaxValueBytes int64
}

// Client calls the KV Store REST endpoints. It is safe for concurrent use.
type Client struct {
	base      string
	token     string
	hc        *http.Client
	userAgent string
	maxValue  int64
}

// NewClient returns a Client for cfg.
func NewClient(cfg Config) (*Client, error) {
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
	}
	if c.hc == nil {
		c.hc = NewHTTPClient(64)
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
	Strong Consistency = iota
	Eventual
)

func (c Consistency) String() string {
	if c == Eventual {
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

// GetItem reads one item.
func (c *Client) GetItem(ctx context.Context, storeID, key string) (*Item, error) {
	req, err := c.newRequest(ctx, http.MethodGet, itemPath(storeID, key), nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(OpGet, req, PreconditionNone)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	item := &Item{Metadata: resp.Header.Get("Metadata")}
	if item.Generation, err = strconv.ParseUint(resp.Header.Get("Generation"), 10, 64); err != nil {
		return nil, &ResponseError{Op: OpGet, Reason: "missing or invalid Generation header"}
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			item.LastModified = t
		}
	}
	if item.Value, err = c.readValue(resp); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	return item, nil
}

// readValue reads a GET body into one buffer sized from Content-Length, so
// a value is held once, not grown by doubling copies.
func (c *Client) readValue(resp *http.Response) ([]byte, error) {
	n := resp.ContentLength
	if n > c.maxValue {
		return nil, &ResponseError{Op: OpGet, Reason: fmt.Sprintf("value of %d bytes exceeds the limit of %d", n, c.maxValue)}
	}
	if n >= 0 {
		buf := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, &TransportError{Op: OpGet, Err: unwrapURLError(err)}
		}
		return buf, nil
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, c.maxValue+1)); err != nil {
		return nil, &TransportError{Op: OpGet, Err: unwrapURLError(err)}
	}
	if int64(buf.Len()) > c.maxValue {
		return nil, &ResponseError{Op: OpGet, Reason: fmt.Sprintf("value exceeds the limit of %d bytes", c.maxValue)}
	}
	return buf.Bytes(), nil
}

// PutItem inserts or updates one item. Fastly's answer carries no
// generation, so none is returned.
func (c *Client) PutItem(ctx context.Context, storeID, key string, value []byte, opts PutOptions) error {
	q := url.Values{}
	cond := PreconditionNone
	switch opts.Mode {
	case PutAdd:
		q.Set("add", "true")
		cond = PreconditionAbsent
	case PutAppend:
		q.Set("append", "true")
	case PutPrepend:
		q.Set("prepend", "true")
	}
	if opts.BackgroundFetch {
		q.Set("background_fetch", "true")
	}
	req, err := c.newRequest(ctx, http.MethodPut, itemPath(storeID, key), q, bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if opts.IfGenerationMatch != nil {
		req.Header.Set("If-Generation-Match", strconv.FormatUint(*opts.IfGenerationMatch, 10))
		cond = PreconditionGeneration
	}
	if opts.Metadata != "" {
		req.Header.Set("Metadata", opts.Metadata)
	}
	if secs := ttlSeconds(opts.TimeToLive); secs > 0 {
		// Fastly spells this header with underscores; set it verbatim.
		req.Header["time_to_live_sec"] = []string{strconv.FormatInt(secs, 10)}
	}
	resp, err := c.do(OpPut, req, cond)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// DeleteItem deletes one item.
func (c *Client) DeleteItem(ctx context.Context, storeID, key string, opts DeleteOptions) error {
	q := url.Values{}
	if opts.Force {
		q.Set("force", "true")
	}
	req, err := c.newRequest(ctx, http.MethodDelete, itemPath(storeID, key), q, nil)
	if err != nil {
		return err
	}
	cond := PreconditionNone
	if opts.IfGenerationMatch != nil {
		req.Header.Set("If-Generation-Match", strconv.FormatUint(*opts.IfGenerationMatch, 10))
		cond = PreconditionGeneration
	}
	resp, err := c.do(OpDelete, req, cond)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// listResponse is the list endpoint's body. meta.limit is a number and the
// other meta fields are strings; only next_cursor matters here.
type listResponse struct {
	Data []string `json:"data"`
	Meta struct {
		NextCursor string `json:"next_cursor"`
	} `json:"meta"`
}

// ListKeys fetches one page of keys. The consistency parameter is always
// sent, as Fastly's own client does.
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
	req, err := c.newRequest(ctx, http.MethodGet, storePath(storeID)+"/keys", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(OpList, req, PreconditionNone)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	page, err := ParseListResponse(resp.Body)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	return page, nil
}

// ParseListResponse decodes a list endpoint body. A missing or empty
// meta.next_cursor marks the last page.
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

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("upstream: building request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Fastly-Key", c.token)
	}
	req.Header.Set("User-Agent", c.userAgent)
	return req, nil
}

// maxErrorBody bounds how much of an error body is kept for logs.
const maxErrorBody = 512

// do sends req and returns the response when its status is a success.
// Otherwise it returns a *StatusError, a *TransportError or the context's
// error, and closes the body.
func (c *Client) do(op Op, req *http.Request, cond Precondition) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &TransportError{Op: op, Err: unwrapURLError(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	return nil, &StatusError{
		Op:           op,
		Status:       resp.StatusCode,
		Precondition: cond,
		RetryAfter:   retryAfter(resp.Header, time.Now()),
		Body:         strings.TrimSpace(string(body)),
	}
}

// drain consumes and closes a success body so the connection is reused.
// The status already said the call succeeded; a broken (empty) body after
// it does not undo that.
func drain(resp *http.Response) {
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
}

// unwrapURLError drops *url.Error's wrapping, whose text carries the URL
// (and so the key) into logs.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
