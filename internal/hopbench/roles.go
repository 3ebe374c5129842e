package hopbench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// RoleEnv names the environment variable that tells a re-executed
// benchmark binary which process of the benchmark it is.
const RoleEnv = "KVHOP_ROLE"

// The child roles. Each serves until its standard input closes, so a
// benchmark that dies takes its children with it.
const (
	roleStore  = "store"
	roleProxy  = "proxy"
	roleKvgate = "kvgate"
)

// RunChildRole runs the benchmark process that RoleEnv names and exits;
// without RoleEnv it returns at once. The benchmark's binary (cmd/kvhop,
// or a test binary from TestMain) calls it first thing, before parsing any
// flags: a child's arguments are its role's, not the binary's.
func RunChildRole() {
	role := os.Getenv(RoleEnv)
	if role == "" {
		return
	}
	var err error
	switch role {
	case roleStore:
		err = serveStore(os.Args[1:])
	case roleProxy:
		err = serveProxies(os.Args[1:])
	case roleKvgate:
		serveKvgate()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvhop %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// untilStdinCloses returns a context that ends when the parent closes
// this process's standard input (or dies), or on SIGINT or SIGTERM.
func untilStdinCloses() (context.Context, context.CancelFunc) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, cancel
}

// serveStore serves an in-memory local store with no injected latency and
// prints its address.
func serveStore(args []string) error {
	fs := flag.NewFlagSet(roleStore, flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	ctx, cancel := untilStdinCloses()
	defer cancel()
	return httpserver.Run(ctx, nil, ln, store.Handler(),
		httpserver.WithConfig(httpserver.Config{ReadHeaderTimeout: 10 * time.Second}))
}

// serveProxies serves two reverse proxies to -target, the stock one and
// one with a buffer pool, each on a listener of its own, plus an admin
// listener for the process's allocation count and profiles. It prints the
// three addresses, one a line, in that order.
//
// Each proxy is what a Go service puts in front of another with the
// standard library alone: httputil.ReverseProxy on a plain http.Server
// speaking HTTP/1.1 and h2c. Its upstream pool holds -conns idle
// connections: with Go's default of two per host, every request beyond
// the second in flight would dial a new connection.
func serveProxies(args []string) error {
	fs := flag.NewFlagSet(roleProxy, flag.ContinueOnError)
	target := fs.String("target", "", "base URL of the store")
	conns := fs.Int("conns", 64, "idle upstream connections to keep")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target must be a base URL, not %q", *target)
	}
	stock := newReverseProxy(u, *conns, nil)
	pooled := newReverseProxy(u, *conns, newBufferPool())

	var lns []net.Listener
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		lns = append(lns, ln)
		fmt.Println(ln.Addr().String())
	}
	ctx, cancel := untilStdinCloses()
	defer cancel()
	errs := make(chan error, len(lns))
	var servers []*http.Server
	for i, h := range []http.Handler{stock, pooled, adminHandler()} {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv := &http.Server{Handler: h, Protocols: p, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { errs <- srv.Serve(lns[i]) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			_ = srv.Close()
		}
	}
	return nil
}

// newReverseProxy returns the stock reverse proxy to target; pool, when
// not nil, is its BufferPool.
func newReverseProxy(target *url.URL, conns int, pool httputil.BufferPool) *httputil.ReverseProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * conns
	tr.MaxIdleConnsPerHost = conns
	return &httputil.ReverseProxy{
		Rewrite:    func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:  tr,
		BufferPool: pool,
	}
}

// bufferPool is a ReverseProxy BufferPool of 32 KiB buffers, the size
// ReverseProxy allocates for each response body copy without one.
type bufferPool struct{ p sync.Pool }

const proxyBufferBytes = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, proxyBufferBytes); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }

// adminHandler serves the proxy process's allocation count (/mallocs,
// runtime.MemStats.Mallocs, as kvgate's /debug/pprof/allocs?debug=1
// reports it) and Go's profiling endpoints.
func adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mallocs", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		_, _ = io.WriteString(w, strconv.FormatUint(m.Mallocs, 10)+"\n")
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return mux
}

// serveKvgate runs the kvgate command itself, with this process's
// arguments as its own, until standard input closes: it then sends itself
// SIGTERM, which kvgate answers with its graceful shutdown.
func serveKvgate() {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		self, err := os.FindProcess(os.Getpid())
		if err == nil {
			err = self.Signal(syscall.SIGTERM)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kvhop kvgate: stopping:", err)
			os.Exit(1)
		}
	}()
	os.Args[0] = "kvgate"
	app.Main("kvgate", app.GatewayFlags, app.Run)
}
