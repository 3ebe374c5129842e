package kvctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/kvctl"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
)

// syncBuffer is a buffer that kvctl writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// switchProxy forwards to the kvgate it currently points at, and answers
// 503 while it points at none: a kvgate restarting behind one address.
type switchProxy struct {
	target atomic.Pointer[httputil.ReverseProxy]
}

func (p *switchProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rp := p.target.Load()
	if rp == nil {
		http.Error(w, "no kvgate", http.StatusServiceUnavailable)
		return
	}
	rp.ServeHTTP(w, r)
}

func (p *switchProxy) point(t *testing.T, st *kvtest.Stack) {
	t.Helper()
	if st == nil {
		p.target.Store(nil)
		return
	}
	u, err := url.Parse(st.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p.target.Store(rp)
}

// waitFor waits until out holds want.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never held %q", out.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatch watches a prefix with --initial: the initial state, a change
// made straight on the store, and, across a kvgate shutdown and another
// kvgate taking over, the changes made while no watch was open, each once.
func TestWatch(t *testing.T) {
	t.Parallel()
	watchCfg := service.WatchConfig{MinInterval: 20 * time.Millisecond}
	first := kvtest.Start(t, kvtest.Options{Watch: watchCfg})
	direct, err := upstream.NewClient(upstream.ClientConfig{BaseURL: first.UpstreamURL})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, value string) {
		t.Helper()
		if err := direct.PutItem(t.Context(), "w", key, []byte(value), upstream.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("w/a", "1")
	put("w/gone", "x")
	put("other", "x")

	proxy := &switchProxy{}
	proxy.point(t, first)
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		env := map[string]string{"KVCTL_ADDR": front.URL}
		done <- kvctl.Run(ctx, []string{"watch", "-s", "w", "--prefix", "w/", "--initial", "--interval", "20ms"},
			strings.NewReader(""), &out, &errOut, func(k string) string { return env[k] })
	}()
	waitFor(t, &out, "present\tw/gone\t")
	waitFor(t, &out, "present\tw/a\t")
	put("w/b", "22")
	waitFor(t, &out, "created\tw/b\t")
	if !strings.Contains(out.String(), "\t2\n") {
		t.Errorf("no size 2 for w/b in %q", out.String())
	}

	// kvgate goes away; while no watch is open the store changes.
	proxy.point(t, nil)
	if err := first.Shutdown(); err != nil {
		t.Fatal(err)
	}
	put("w/a", "changed")
	if err := direct.DeleteItem(t.Context(), "w", "w/gone", upstream.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	put("w/c", "new")
	second := kvtest.Start(t, kvtest.Options{Upstream: first.Store.Handler(), Watch: watchCfg})
	proxy.point(t, second)
	for _, want := range []string{"updated\tw/a\t", "deleted\tw/gone\t-\t-\n", "created\tw/c\t"} {
		waitFor(t, &out, want)
	}
	cancel()
	if code := <-done; code != kvctl.ExitOK {
		t.Errorf("watch ended with exit %d, stderr %q", code, errOut.String())
	}
	got := out.String()
	for _, once := range []string{"created\tw/b\t", "present\tw/a\t", "updated\tw/a\t"} {
		if n := strings.Count(got, once); n != 1 {
			t.Errorf("%q printed %d times in %q; want once", once, n, got)
		}
	}
	if strings.Contains(got, "other") {
		t.Errorf("a key outside the prefix was printed: %q", got)
	}
	if !strings.Contains(errOut.String(), "resuming") {
		t.Errorf("stderr %q; want the reconnection told", errOut.String())
	}
}

// TestWatchJSONWithoutInitial watches keys without --initial: the present
// state is not printed, and a change is one JSON object per line.
func TestWatchJSONWithoutInitial(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{Watch: service.WatchConfig{MinInterval: 20 * time.Millisecond}})
	seed(t, st, "wj", []string{"k1", "k2"})
	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		env := map[string]string{"KVCTL_ADDR": st.URL}
		done <- kvctl.Run(ctx, []string{"watch", "-s", "wj", "--json", "k1", "k3"},
			strings.NewReader(""), &out, &errOut, func(k string) string { return env[k] })
	}()
	// The watch has its baseline once a change made after it started is
	// reported; keep writing until one is.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), `"k3"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no change reported: %q, stderr %q", out.String(), errOut.String())
		}
		mustRun(t, st.URL, "", "put", "-s", "wj", "k3", "abc")
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	for _, line := range lines(out.String()) {
		var ch struct {
			Type, Key, Generation string
			Size                  *int
		}
		if err := json.Unmarshal([]byte(line), &ch); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if ch.Key != "k3" || ch.Type != "created" && ch.Type != "updated" || ch.Generation == "" || ch.Size == nil || *ch.Size != 3 {
			t.Errorf("change %q; want k3 created or updated with its generation and size 3", line)
		}
	}
	if got := kvctlAt(t, st.URL, "", "watch", "-s", "wj"); got.code != kvctl.ExitUsage {
		t.Errorf("watch with neither keys nor --prefix: exit %d", got.code)
	}
}
