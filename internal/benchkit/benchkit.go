// Package benchkit measures kvgate's streaming RPCs beside a direct REST
// client doing the same work against the same upstream, in the same run,
// and reports the ratios. cmd/kvbench and the Go benchmarks in bench/ use it;
// its pieces for serving kvgate and the local store, and for calling
// kvgate, serve the other benchmarks (internal/gcbench, cmd/kvgcbench) too.
package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
)

// Config sizes the scenarios.
type Config struct {
	// UpstreamURL is the Fastly-compatible server both sides call.
	UpstreamURL string
	// Items and ValueBytes size the upload.
	Items      int
	ValueBytes int
	// SingleConcurrency is how many single PUTs the direct client keeps in
	// flight.
	SingleConcurrency int
	// Batch configures kvgate's batcher; the direct batch client cuts the
	// same batches and keeps the same number in flight.
	Batch service.BatchConfig
	// MessageItems is how many items each BatchPutItems message carries.
	MessageItems int
	// Keys and PageSize size the enumeration.
	Keys     int
	PageSize int
	// Store is the store id; each scenario uses its own prefix of keys.
	Store string
	// GetItemsConcurrency is kvgate's -get-items-concurrency; its default
	// when zero.
	GetItemsConcurrency int
	// CopyItems sizes the copy (of ValueBytes values); CopyConcurrency is
	// the GETs kvgate and the direct client keep in flight while copying.
	CopyItems       int
	CopyConcurrency int
	// ListMetadataConcurrency is kvgate's -list-metadata-concurrency, and
	// the HEADs the direct client keeps in flight when it does the same
	// work; service.DefaultListMetadataConcurrency when zero.
	ListMetadataConcurrency int
}

// Env is a running kvgate in front of the upstream, with counters of the
// requests each side sends upstream.
type Env struct {
	cfg      Config
	kvgate   kvv1connect.KVStoreServiceClient
	direct   *upstream.Client
	viaCount atomic.Int64 // requests kvgate sent upstream
	dirCount atomic.Int64 // requests the direct client sent
	stop     func()
}

// countingTransport counts requests on their way upstream.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// CountingClient is an upstream HTTP client for up to maxConns connections
// that adds each request it sends to n.
func CountingClient(maxConns int, n *atomic.Int64) *http.Client {
	hc := upstream.NewHTTPClient(maxConns)
	hc.Transport = countingTransport{next: hc.Transport, n: n}
	return hc
}

// ServeGateway serves kvgate, configured by cfg, on a loopback listener
// until stop is called or ctx ends, and returns its address.
func ServeGateway(ctx context.Context, cfg app.GatewayConfig) (addr string, stop func(), err error) {
	gw, err := app.NewGateway(cfg)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gw.Serve(ctx, ln)
	}()
	return ln.Addr().String(), func() { cancel(); <-done }, nil
}

// KvgateClient is a gRPC client of kvgate at addr over a connection pool
// of its own (h2c), and that pool's transport.
func KvgateClient(addr string) (kvv1connect.KVStoreServiceClient, *http.Transport) {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	return kvv1connect.NewKVStoreServiceClient(connect.NewClient(
		connecthttp.NewTransport(&http.Client{Transport: tr}, "http://"+addr, connecthttp.WithGRPC()))), tr
}

// Start starts kvgate in this process on a loopback listener.
func Start(cfg Config) (*Env, error) {
	e := &Env{cfg: cfg}
	maxConns := max(cfg.SingleConcurrency, cfg.Batch.Concurrency, cfg.CopyConcurrency, 64)
	var err error
	if e.direct, err = upstream.NewClient(upstream.ClientConfig{BaseURL: cfg.UpstreamURL, HTTPClient: CountingClient(maxConns, &e.dirCount)}); err != nil {
		return nil, err
	}
	addr, stop, err := ServeGateway(context.Background(), app.GatewayConfig{
		UpstreamURL: cfg.UpstreamURL,
		HTTPClient:  CountingClient(maxConns, &e.viaCount),
		Batch:       cfg.Batch,

		GetItemsConcurrency:     cfg.GetItemsConcurrency,
		CopyConcurrency:         cfg.CopyConcurrency,
		ListMetadataConcurrency: cfg.ListMetadataConcurrency,
	})
	if err != nil {
		return nil, err
	}
	e.stop = stop
	e.kvgate, _ = KvgateClient(addr)
	return e, nil
}

// Close stops kvgate.
func (e *Env) Close() { e.stop() }

// Measurement is one side of a comparison.
type Measurement struct {
	Name     string
	Duration time.Duration
	// Requests is how many requests went upstream.
	Requests int64
	// FirstResult is when the first keys arrived (enumeration only).
	FirstResult time.Duration
	// PeakHeap is the largest Go heap in use seen during the run, minus
	// the heap before it (kvgate's side only).
	PeakHeap uint64
}

func (e *Env) measure(name string, counter *atomic.Int64, sampleHeap bool, fn func() error) (Measurement, error) {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	var wg sync.WaitGroup
	if sampleHeap {
		wg.Go(func() {
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stopSampling:
					return
				case <-t.C:
				}
			}
		})
	}
	before := counter.Load()
	start := time.Now()
	err := fn()
	m := Measurement{Name: name, Duration: time.Since(start), Requests: counter.Load() - before}
	close(stopSampling)
	wg.Wait()
	if p := peak.Load(); p > base.HeapInuse {
		m.PeakHeap = p - base.HeapInuse
	}
	return m, err
}

// measureFirst is measure for a side whose results arrive over time: fn
// calls arrived as results arrive, and the measurement's FirstResult is
// the first call's time since the start.
func (e *Env) measureFirst(name string, counter *atomic.Int64, sampleHeap bool, fn func(arrived func()) error) (Measurement, error) {
	var first time.Duration
	start := time.Now()
	m, err := e.measure(name, counter, sampleHeap, func() error {
		return fn(func() {
			if first == 0 {
				first = time.Since(start)
			}
		})
	})
	m.FirstResult = first
	return m, err
}

// receiveAll passes each message receive returns to fn until the stream
// ends or either fails.
func receiveAll[T any](receive func() (T, error), fn func(T) error) error {
	for {
		msg, err := receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
}

// eachPage passes each page of store's keys under prefix, limit keys a
// page (the upstream's default when 0), to fn, one page after another.
func (e *Env) eachPage(ctx context.Context, store, prefix string, limit int, fn func(keys []string) error) error {
	cursor := ""
	for {
		page, err := e.direct.ListKeys(ctx, store, upstream.ListOptions{Prefix: prefix, Cursor: cursor, Limit: limit})
		if err != nil {
			return err
		}
		if err := fn(page.Keys); err != nil {
			return err
		}
		if cursor = page.NextCursor; cursor == "" {
			return nil
		}
	}
}

// putBatches writes lines to store in batch PUTs cut as kvgate's batcher
// cuts them (Batch.MaxLines, Batch.MaxBytes), with Batch.Concurrency in
// flight, in goroutines of g, whose context ctx is.
func (e *Env) putBatches(ctx context.Context, g *errgroup.Group, store string, lines iter.Seq[upstream.BatchLine]) {
	bodies := make(chan []byte)
	g.Go(func() error {
		defer close(bodies)
		var body []byte
		n := 0
		send := func() error {
			select {
			case bodies <- body:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		for line := range lines {
			if n > 0 && (n == e.cfg.Batch.MaxLines || len(body)+upstream.BatchLineSize(line) > e.cfg.Batch.MaxBytes) {
				if err := send(); err != nil {
					return err
				}
				body, n = nil, 0
			}
			body = upstream.AppendBatchLine(body, line)
			n++
		}
		if n > 0 {
			return send()
		}
		return nil
	})
	for range e.cfg.Batch.Concurrency {
		g.Go(func() error {
			for body := range bodies {
				res, err := e.direct.PutBatch(ctx, store, body)
				if err != nil {
					return err
				}
				if len(res.LineErrors) > 0 {
					return fmt.Errorf("%d line errors", len(res.LineErrors))
				}
			}
			return nil
		})
	}
}

func (e *Env) value(i int) []byte {
	v := make([]byte, e.cfg.ValueBytes)
	for j := range v {
		v[j] = byte(i + j)
	}
	return v
}

// UploadKvgate streams the items through BatchPutItems.
func (e *Env) UploadKvgate(ctx context.Context, prefix string) (Measurement, error) {
	return e.measure("kvgate BatchPutItems", &e.viaCount, true, func() error {
		stream, err := e.kvgate.BatchPutItems(ctx)
		if err != nil {
			return err
		}
		msg := &kvv1.BatchPutItemsRequest{StoreId: e.cfg.Store}
		for i := range e.cfg.Items {
			msg.Items = append(msg.Items, &kvv1.BatchItem{Key: fmt.Sprintf("%s%08d", prefix, i), Value: e.value(i)})
			if len(msg.Items) == e.cfg.MessageItems || i == e.cfg.Items-1 {
				if err := stream.Send(msg); err != nil {
					_, err = stream.CloseAndReceive()
					return err
				}
				msg = &kvv1.BatchPutItemsRequest{}
			}
		}
		res, err := stream.CloseAndReceive()
		if err != nil {
			return err
		}
		if res.GetWritten() != uint64(e.cfg.Items) || len(res.GetFailures()) > 0 {
			return fmt.Errorf("kvgate wrote %d of %d items, %d failures", res.GetWritten(), e.cfg.Items, len(res.GetFailures()))
		}
		return nil
	})
}

// UploadDirectBatch cuts the same batch PUTs kvgate does and keeps as many
// in flight.
func (e *Env) UploadDirectBatch(ctx context.Context, prefix string) (Measurement, error) {
	return e.measure("direct batch PUTs", &e.dirCount, false, func() error {
		g, ctx := errgroup.WithContext(ctx)
		e.putBatches(ctx, g, e.cfg.Store, func(yield func(upstream.BatchLine) bool) {
			for i := range e.cfg.Items {
				if !yield(upstream.BatchLine{Key: fmt.Sprintf("%s%08d", prefix, i), Value: e.value(i)}) {
					return
				}
			}
		})
		return g.Wait()
	})
}

// UploadDirectSingle writes every item with its own PUT, keeping
// SingleConcurrency in flight: what a client without batching does.
func (e *Env) UploadDirectSingle(ctx context.Context, prefix string) (Measurement, error) {
	return e.measure("direct single PUTs", &e.dirCount, false, func() error {
		g, ctx := errgroup.WithContext(ctx)
		g.SetLimit(e.cfg.SingleConcurrency)
		for i := range e.cfg.Items {
			g.Go(func() error {
				return e.direct.PutItem(ctx, e.cfg.Store, fmt.Sprintf("%s%08d", prefix, i), e.value(i), upstream.PutOptions{})
			})
		}
		return g.Wait()
	})
}

// Seed writes Keys small items under prefix with direct batch PUTs.
func (e *Env) Seed(ctx context.Context, prefix string) error {
	saved := e.cfg
	defer func() { e.cfg = saved }()
	e.cfg.Items, e.cfg.ValueBytes = e.cfg.Keys, 8
	_, err := e.UploadDirectBatch(ctx, prefix)
	return err
}

// EnumerateDirect walks the list cursors one page after another.
func (e *Env) EnumerateDirect(ctx context.Context, prefix string) (Measurement, error) {
	return e.enumerateDirect(ctx, "direct cursor loop", prefix, nil)
}

// enumerateDirect walks the list cursors one page after another, calling
// perPage (when not nil) with each page's keys before it counts them as
// arrived.
func (e *Env) enumerateDirect(ctx context.Context, name, prefix string, perPage func(keys []string) error) (Measurement, error) {
	return e.measureFirst(name, &e.dirCount, false, func(arrived func()) error {
		n := 0
		err := e.eachPage(ctx, e.cfg.Store, prefix, e.cfg.PageSize, func(keys []string) error {
			if perPage != nil {
				if err := perPage(keys); err != nil {
					return err
				}
			}
			arrived()
			n += len(keys)
			return nil
		})
		if err != nil {
			return err
		}
		return e.checkCount(n)
	})
}

// EnumerateKvgate streams the keys through StreamKeys.
func (e *Env) EnumerateKvgate(ctx context.Context, prefix string) (Measurement, error) {
	return e.enumerateKvgate(ctx, "kvgate StreamKeys", &kvv1.StreamKeysRequest{StoreId: e.cfg.Store, Prefix: prefix, PageSize: uint32(e.cfg.PageSize)}, nil)
}

// enumerateKvgate streams the keys req asks for through StreamKeys,
// calling check (when not nil) with each message before it counts its
// keys.
func (e *Env) enumerateKvgate(ctx context.Context, name string, req *kvv1.StreamKeysRequest, check func(*kvv1.StreamKeysResponse) error) (Measurement, error) {
	return e.measureFirst(name, &e.viaCount, true, func(arrived func()) error {
		stream, err := e.kvgate.StreamKeys(ctx, req)
		if err != nil {
			return err
		}
		defer stream.Close()
		n := 0
		err = receiveAll(stream.Receive, func(msg *kvv1.StreamKeysResponse) error {
			arrived()
			if check != nil {
				if err := check(msg); err != nil {
					return err
				}
			}
			n += len(msg.GetKeys())
			return nil
		})
		if err != nil {
			return err
		}
		return e.checkCount(n)
	})
}

func (e *Env) checkCount(n int) error {
	if n != e.cfg.Keys {
		return fmt.Errorf("enumerated %d keys, want %d", n, e.cfg.Keys)
	}
	return nil
}
