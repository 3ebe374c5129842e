package upstream_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// TestRetryWaitsOutSpentBudget checks a 429 that reports the write budget
// spent (Fastly-RateLimit-Remaining: 0) with a Retry-After shorter than
// the time to Fastly-RateLimit-Reset: the retry waits until the reset and
// goes out, instead of waiting Retry-After and then being refused by the
// client's own budget check without being sent.
func TestRetryWaitsOutSpentBudget(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Fastly-RateLimit-Remaining", "0")
			w.Header().Set("Fastly-RateLimit-Reset", strconv.FormatInt(time.Now().Add(1500*time.Millisecond).Unix()+1, 10))
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	c, err := upstream.NewClient(upstream.Config{BaseURL: srv.URL, Retry: upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.PutItem(t.Context(), "s", "k", []byte("v"), upstream.PutOptions{}); err != nil {
		t.Fatalf("PutItem after %v and %d requests: %v; want it sent again once the budget reset", time.Since(start), n.Load(), err)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
}
