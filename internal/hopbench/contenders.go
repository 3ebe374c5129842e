package hopbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// storeID is the store every contender reads and writes.
const storeID = "bench"

// hop is the process a contender's requests cross on their way to the
// store, whose CPU time is measured during the contender's runs.
type hop int

const (
	hopNone hop = iota // straight to the store
	hopProxy
	hopKvgate
)

// wire is how a contender talks to the process in front of it.
type wire int

const (
	restH1 wire = iota
	restH2C
	connectH1
	connectGetH1
	connectJSONH1
	grpcH2C
)

// target is the listener a contender calls.
type target int

const (
	targetStore target = iota
	targetProxy
	targetPooledProxy
	targetKvgate
)

// contender is one way of calling the store.
type contender struct {
	name string
	// ref is the contender this one's throughput and CPU ratios are
	// against: the stock proxy over the same HTTP version. Empty for none.
	ref    string
	wire   wire
	target target
}

func (c contender) hop() hop {
	switch c.target {
	case targetProxy, targetPooledProxy:
		return hopProxy
	case targetKvgate:
		return hopKvgate
	}
	return hopNone
}

// contenders are every contender, in the order each round runs them.
var contenders = []contender{
	{name: "direct", wire: restH1, target: targetStore},
	{name: "proxy-h1", wire: restH1, target: targetProxy},
	{name: "proxy-h2c", ref: "proxy-h1", wire: restH2C, target: targetProxy},
	{name: "pooled-proxy-h1", ref: "proxy-h1", wire: restH1, target: targetPooledProxy},
	{name: "pooled-proxy-h2c", ref: "proxy-h2c", wire: restH2C, target: targetPooledProxy},
	{name: "kvgate-connect-h1", ref: "proxy-h1", wire: connectH1, target: targetKvgate},
	{name: "kvgate-connect-get-h1", ref: "proxy-h1", wire: connectGetH1, target: targetKvgate},
	{name: "kvgate-json-h1", ref: "proxy-h1", wire: connectJSONH1, target: targetKvgate},
	{name: "kvgate-grpc-h2c", ref: "proxy-h2c", wire: grpcH2C, target: targetKvgate},
}

// ContenderNames lists the contenders' names, in the order they run.
func ContenderNames() []string {
	names := make([]string, len(contenders))
	for i, c := range contenders {
		names[i] = c.name
	}
	return names
}

// selectContenders returns the contenders whose names match one of the
// patterns (path.Match globs, such as "kvgate-*"); every contender when
// there are none. A pattern that matches nothing is an error, as it is
// most likely a typo.
func selectContenders(patterns []string) ([]contender, error) {
	if len(patterns) == 0 {
		return contenders, nil
	}
	matched := make(map[string]bool)
	var out []contender
	for _, c := range contenders {
		for _, p := range patterns {
			ok, err := path.Match(p, c.name)
			if err != nil {
				return nil, fmt.Errorf("contender pattern %q: %w", p, err)
			}
			if ok {
				matched[p] = true
				out = append(out, c)
				break
			}
		}
	}
	for _, p := range patterns {
		if !matched[p] {
			return nil, fmt.Errorf("contender pattern %q matches none of %s", p, strings.Join(ContenderNames(), ", "))
		}
	}
	return out, nil
}

// client makes one contender's calls. Each call reads the whole response
// and fails on any status but success, and on a value of the wrong size.
type client interface {
	get(ctx context.Context, key string, size int) error
	put(ctx context.Context, key string, value []byte) error
	close()
}

// newClient returns c's client for baseURL, its connection pool sized to
// conns.
func newClient(c contender, baseURL string, conns int) client {
	hc := newHTTPClient(c.wire == restH2C || c.wire == grpcH2C, conns)
	switch c.wire {
	case connectH1, connectGetH1, connectJSONH1, grpcH2C:
		var opts []connecthttp.Option
		switch c.wire {
		case connectGetH1:
			// GetItem as an HTTP GET, as browsers and caches use it;
			// PutItem stays a POST.
			opts = append(opts, connecthttp.WithHTTPGet())
		case connectJSONH1:
			opts = append(opts, connecthttp.WithProtoJSON())
		case grpcH2C:
			opts = append(opts, connecthttp.WithGRPC())
		}
		return &rpcClient{hc: hc, kv: kvv1connect.NewKVStoreServiceClient(
			connect.NewClient(connecthttp.NewTransport(hc, baseURL, opts...)))}
	}
	return &restClient{hc: hc, base: baseURL + "/resources/stores/kv/" + storeID + "/keys/"}
}

// newHTTPClient returns a client speaking HTTP/1.1, or h2c only, that
// keeps conns idle connections: the pool holds one for each worker.
func newHTTPClient(h2c bool, conns int) *http.Client {
	p := new(http.Protocols)
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Client{
		Transport: &http.Transport{
			Protocols:           p,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
		},
		// A call that hangs fails the run instead of stalling it.
		Timeout: 30 * time.Second,
	}
}

// restClient calls the Fastly KV REST API, of the store or through a
// proxy.
type restClient struct {
	hc   *http.Client
	base string
}

func (c *restClient) get(ctx context.Context, key string, size int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+key, nil)
	if err != nil {
		return err
	}
	n, err := c.do(req)
	if err == nil && n != int64(size) {
		err = fmt.Errorf("GET %s: %d bytes, want %d", key, n, size)
	}
	return err
}

func (c *restClient) put(ctx context.Context, key string, value []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+key, bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	_, err = c.do(req)
	return err
}

// do sends req with the API token, reads the whole response body and
// returns its length; a status other than 2xx is an error.
func (c *restClient) do(req *http.Request) (int64, error) {
	req.Header.Set("Fastly-Key", "kvhop")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, fmt.Errorf("%s %s: reading the body: %w", req.Method, req.URL.Path, err)
	}
	return n, nil
}

func (c *restClient) close() { c.hc.CloseIdleConnections() }

// rpcClient calls kvgate's GetItem and PutItem.
type rpcClient struct {
	hc *http.Client
	kv kvv1connect.KVStoreServiceClient
}

func (c *rpcClient) get(ctx context.Context, key string, size int) error {
	res, err := c.kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: storeID, Key: key})
	if err != nil {
		return fmt.Errorf("GetItem %s: %w", key, err)
	}
	if n := len(res.GetItem().GetValue()); n != size {
		return fmt.Errorf("GetItem %s: %d bytes, want %d", key, n, size)
	}
	return nil
}

func (c *rpcClient) put(ctx context.Context, key string, value []byte) error {
	if _, err := c.kv.PutItem(ctx, &kvv1.PutItemRequest{StoreId: storeID, Key: key, Value: value}); err != nil {
		return fmt.Errorf("PutItem %s: %w", key, err)
	}
	return nil
}

func (c *rpcClient) close() { c.hc.CloseIdleConnections() }
