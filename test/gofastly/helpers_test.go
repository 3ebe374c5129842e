package gofastly_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fastly/go-fastly/v16/fastly"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// clock is the local store's time, moved by the tests that need TTLs to
// expire without waiting.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newClient starts an in-memory local store on a loopback listener and
// returns a go-fastly client pointed at it, with the store's clock.
func newClient(t *testing.T) (*fastly.Client, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	store, err := localstore.Open(localstore.Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	c, err := fastly.NewClientForEndpoint("local-token", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

// wantStatus fails unless err is go-fastly's HTTP error with that status;
// status 0 wants no error.
func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var httpErr *fastly.HTTPError
	if !errors.As(err, &httpErr) {
		t.Fatalf("error = %v (%T), want a *fastly.HTTPError with status %d", err, err, status)
	}
	if httpErr.StatusCode != status {
		t.Fatalf("status = %d (%s), want %d %s", httpErr.StatusCode, err, status, http.StatusText(status))
	}
}
