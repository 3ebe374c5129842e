package upstream_test

// These tests drive Fastly's write budget (Fastly-RateLimit-* headers)
// through the client, on the scripted servers of the retry tests: once it
// is spent, writes fail fast without being sent until the reset.

import (
	"errors"
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
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, Retry: upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Second}})
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

// rtBudget answers a write with Fastly's rate-limit headers: remaining
// writes and the window's reset, computed at answer time.
func rtBudget(step rtStep, remaining string, reset func() time.Time) rtStep {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Fastly-RateLimit-Remaining", remaining)
		if reset != nil {
			w.Header().Set("Fastly-RateLimit-Reset", strconv.FormatInt(reset().Unix(), 10))
		}
		step(w, r)
	}
}

func rtIn(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(d) }
}

// wantBudgetRefusal checks err is the client's own 429 for a spent write
// budget: not sent, with the time to the reset.
func wantBudgetRefusal(t *testing.T, err error, op upstream.Op, minWait, maxWait time.Duration) {
	t.Helper()
	se := wantStatusError(t, err, op, http.StatusTooManyRequests, 0)
	if !se.NotSent {
		t.Errorf("NotSent = false, want true")
	}
	if se.RetryAfter < minWait || se.RetryAfter > maxWait {
		t.Errorf("RetryAfter = %v, want between %v and %v", se.RetryAfter, minWait, maxWait)
	}
	wantKnownOutcome(t, err)
}

// TestWriteBudgetSpent checks that once a write's response says the write
// budget is spent, every kind of write fails fast without being sent until
// the reset, while reads still go out.
func TestWriteBudgetSpent(t *testing.T) {
	t.Parallel()
	for _, first := range []rtCall{rtPlainPut, rtPlainDelete, rtBatch} {
		t.Run("spent by "+first.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtBudget(rtOK, "0", rtIn(60*time.Second)), rtOK)
			c := s.client(t, rtPolicy)
			if err := first.do(t.Context(), c); err != nil {
				t.Fatalf("%s: %v", first.name, err)
			}
			// Subtests run in order on the shared client: not parallel.
			for _, w := range rtWriteCalls {
				t.Run("write "+w.name, func(t *testing.T) {
					before := s.attempts()
					err := w.do(t.Context(), c)
					wantBudgetRefusal(t, err, w.op, 50*time.Second, 60*time.Second)
					wantAttempts(t, s, before)
				})
			}
			for _, r := range rtReadCalls {
				t.Run("read "+r.name, func(t *testing.T) {
					before := s.attempts()
					if err := r.do(t.Context(), c); err != nil {
						t.Fatalf("%s while the write budget is spent: %v, want it to go out", r.name, err)
					}
					wantAttempts(t, s, before+1)
				})
			}
		})
	}
}

// TestWriteBudgetSpentBy429 checks a 429 that reports the budget spent:
// it is handed back with the time to the reset (longer than MaxDelay), and
// the next write is not sent.
func TestWriteBudgetSpentBy429(t *testing.T) {
	t.Parallel()
	s := newRTServer(t, rtBudget(rtStatus(429), "0", rtIn(60*time.Second)), rtOK)
	c := s.client(t, rtPolicy)
	err := rtPlainPut.do(t.Context(), c)
	se := wantStatusError(t, err, upstream.OpPut, 429, 1)
	if se.NotSent || se.RetryAfter < 50*time.Second || se.RetryAfter > 60*time.Second {
		t.Errorf("StatusError = {NotSent:%v RetryAfter:%v}, want a sent 429 with about 60s to wait", se.NotSent, se.RetryAfter)
	}
	wantAttempts(t, s, 1)
	err = rtAppend.do(t.Context(), c)
	wantBudgetRefusal(t, err, upstream.OpPut, 50*time.Second, 60*time.Second)
	wantAttempts(t, s, 1)
}

// TestWriteBudgetReset checks that writes go out again once the reset
// time has passed.
func TestWriteBudgetReset(t *testing.T) {
	t.Parallel()
	t.Run("reset already past", func(t *testing.T) {
		t.Parallel()
		s := newRTServer(t, rtBudget(rtOK, "0", rtIn(-10*time.Second)), rtOK)
		c := s.client(t, rtPolicy)
		for i, w := range []rtCall{rtPlainPut, rtAppend, rtPlainDelete, rtBatch} {
			if err := w.do(t.Context(), c); err != nil {
				t.Fatalf("%s: %v, want it sent: the window already reset", w.name, err)
			}
			wantAttempts(t, s, i+1)
		}
	})
	t.Run("budget left", func(t *testing.T) {
		t.Parallel()
		s := newRTServer(t, rtBudget(rtOK, "1", rtIn(time.Hour)))
		c := s.client(t, rtPolicy)
		for i, w := range []rtCall{rtPlainPut, rtAppend, rtPlainDelete, rtBatch} {
			if err := w.do(t.Context(), c); err != nil {
				t.Fatalf("%s: %v, want it sent: budget is left", w.name, err)
			}
			wantAttempts(t, s, i+1)
		}
	})
	t.Run("reset reached", func(t *testing.T) {
		t.Parallel()
		var resetAt atomic.Int64
		s := newRTServer(t, func(w http.ResponseWriter, r *http.Request) {
			reset := time.Now().Add(2 * time.Second).Unix()
			resetAt.Store(reset)
			rtBudget(rtOK, "0", func() time.Time { return time.Unix(reset, 0) })(w, r)
		}, rtOK)
		c := s.client(t, rtPolicy)
		if err := rtPlainPut.do(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		err := rtAppend.do(t.Context(), c)
		wantBudgetRefusal(t, err, upstream.OpPut, time.Nanosecond, 2*time.Second)
		wantAttempts(t, s, 1)
		time.Sleep(time.Until(time.Unix(resetAt.Load(), 0)) + 20*time.Millisecond)
		if err := rtAppend.do(t.Context(), c); err != nil {
			t.Fatalf("append after the reset: %v, want it sent", err)
		}
		wantAttempts(t, s, 2)
		if err := rtPlainDelete.do(t.Context(), c); err != nil {
			t.Fatalf("delete after the reset: %v, want it sent", err)
		}
		wantAttempts(t, s, 3)
	})
}

// TestWriteBudgetIgnoresReads checks that rate-limit headers on a read's
// response do not touch the write budget: reads are not limited and
// Fastly's own client reads the headers only from writes.
func TestWriteBudgetIgnoresReads(t *testing.T) {
	t.Parallel()
	for _, r := range rtReadCalls {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtBudget(rtOK, "0", rtIn(60*time.Second)), rtOK)
			c := s.client(t, rtPolicy)
			if err := r.do(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			for i, w := range []rtCall{rtPlainPut, rtAppend, rtPlainDelete, rtBatch} {
				if err := w.do(t.Context(), c); err != nil {
					t.Fatalf("%s after a read reported no budget: %v, want it sent", w.name, err)
				}
				wantAttempts(t, s, i+2)
			}
		})
	}
}

// TestOwnWriteBudget checks ClientConfig.WriteBudget through the client:
// N writes of any kind go out, the next is refused without being sent,
// reads still go out, and the budget left is reported.
func TestOwnWriteBudget(t *testing.T) {
	t.Parallel()
	writes := []rtCall{rtPlainPut, rtPlainDelete, rtBatch}
	s := newRTServer(t, rtOK)
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: s.srv.URL, Retry: rtPolicy, WriteBudget: int64(len(writes))})
	if err != nil {
		t.Fatal(err)
	}
	if left, ok := c.WriteBudgetRemaining(); !ok || left != int64(len(writes)) {
		t.Errorf("WriteBudgetRemaining before any write = %d, %v; want %d, true", left, ok, len(writes))
	}
	for i, w := range writes {
		if err := w.do(t.Context(), c); err != nil {
			t.Fatalf("%s: %v; want it sent", w.name, err)
		}
		wantAttempts(t, s, i+1)
	}
	for _, w := range rtWriteCalls {
		err := w.do(t.Context(), c)
		wantBudgetRefusal(t, err, w.op, time.Minute, time.Hour+time.Minute)
		if se, _ := errors.AsType[*upstream.StatusError](err); !se.OwnBudget {
			t.Errorf("%s: OwnBudget = false; want the refusal marked as kvgate's own", w.name)
		}
		wantAttempts(t, s, len(writes))
	}
	for _, r := range rtReadCalls {
		if err := r.do(t.Context(), c); err != nil {
			t.Errorf("%s with the write budget spent: %v; want reads never refused", r.name, err)
		}
	}
	if left, ok := c.WriteBudgetRemaining(); !ok || left != 0 {
		t.Errorf("WriteBudgetRemaining = %d, %v; want 0, true", left, ok)
	}
}

// TestOwnWriteBudgetCountsRetries checks that every attempt sent counts:
// a write retried after a 503 spends two of the budget.
func TestOwnWriteBudgetCountsRetries(t *testing.T) {
	t.Parallel()
	s := newRTServer(t, rtStatus(503), rtOK)
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: s.srv.URL, Retry: rtPolicy, WriteBudget: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := rtPlainPut.do(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	wantAttempts(t, s, 2)
	if left, _ := c.WriteBudgetRemaining(); left != 1 {
		t.Errorf("WriteBudgetRemaining after a write sent twice = %d; want 1", left)
	}
}
