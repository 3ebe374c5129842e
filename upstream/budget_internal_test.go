package upstream

// White-box tests of the write budget's bookkeeping, without any network.

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func budgetHeader(remaining string, reset int64) http.Header {
	h := http.Header{}
	if remaining != "" {
		h.Set("Fastly-RateLimit-Remaining", remaining)
	}
	if reset != 0 {
		h.Set("Fastly-RateLimit-Reset", strconv.FormatInt(reset, 10))
	}
	return h
}

func TestRateBudget(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_750_000_000, 0)
	epoch := now.Unix()
	writes := []string{http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodPatch}
	reads := []string{http.MethodGet, http.MethodHead}

	t.Run("unknown budget lets writes out", func(t *testing.T) {
		t.Parallel()
		b := newRateBudget()
		for _, m := range writes {
			if err := b.check(OpPut, m, now); err != nil {
				t.Errorf("check(%s) = %v, want nil", m, err)
			}
		}
	})
	t.Run("spent budget refuses writes until the reset", func(t *testing.T) {
		t.Parallel()
		b := newRateBudget()
		b.update(http.MethodPut, budgetHeader("0", epoch+60))
		for _, m := range writes {
			err := b.check(OpDelete, m, now)
			se, ok := err.(*StatusError)
			if !ok || se.Status != http.StatusTooManyRequests || !se.NotSent || se.Op != OpDelete ||
				se.RetryAfter != 60*time.Second || se.Attempts != 0 {
				t.Errorf("check(%s) = %#v, want a not-sent 429 with RetryAfter 60s", m, err)
			}
		}
		for _, m := range reads {
			if err := b.check(OpGet, m, now); err != nil {
				t.Errorf("check(%s) = %v, want reads never refused", m, err)
			}
		}
		if err := b.check(OpPut, http.MethodPut, now.Add(59*time.Second)); err == nil {
			t.Error("check a second before the reset let the write out")
		}
		if err := b.check(OpPut, http.MethodPut, now.Add(60*time.Second)); err != nil {
			t.Errorf("check at the reset = %v, want nil", err)
		}
		// A new window: unknown until the next answer, not still spent.
		if err := b.check(OpPut, http.MethodPut, now); err != nil {
			t.Errorf("check after the reset opened a new window = %v, want nil", err)
		}
	})
	t.Run("reads do not update", func(t *testing.T) {
		t.Parallel()
		b := newRateBudget()
		for _, m := range reads {
			b.update(m, budgetHeader("0", epoch+60))
		}
		if err := b.check(OpPut, http.MethodPut, now); err != nil {
			t.Errorf("check after reads reported no budget = %v, want nil", err)
		}
	})
	t.Run("budget left", func(t *testing.T) {
		t.Parallel()
		b := newRateBudget()
		b.update(http.MethodPut, budgetHeader("0", epoch+60))
		b.update(http.MethodPut, budgetHeader("5", epoch+60))
		if err := b.check(OpPut, http.MethodPut, now); err != nil {
			t.Errorf("check with 5 writes left = %v, want nil", err)
		}
	})
	t.Run("unreadable or missing headers are ignored", func(t *testing.T) {
		t.Parallel()
		b := newRateBudget()
		b.update(http.MethodPut, budgetHeader("none", epoch+60))
		b.update(http.MethodPut, budgetHeader("", epoch+60))
		if err := b.check(OpPut, http.MethodPut, now); err != nil {
			t.Errorf("check = %v, want nil", err)
		}
	})
}

func TestOwnBudget(t *testing.T) {
	t.Parallel()
	// A whole minute, so that the slot boundaries below are exact.
	start := time.Unix(1_750_000_020, 0).Truncate(time.Minute)
	for _, tc := range []struct {
		name  string
		limit int64
		// writes are the offsets from start of the writes to count, each
		// expected to be let out.
		writes []time.Duration
		// at is when the next write is tried, refused unless wait is 0.
		at   time.Duration
		wait time.Duration
		left int64 // writes left at at, before the try
	}{
		{name: "under the limit", limit: 3, writes: []time.Duration{0, time.Second}, at: 2 * time.Second, left: 1},
		{name: "at the limit", limit: 2, writes: []time.Duration{0, 30 * time.Second}, at: 59 * time.Second,
			wait: time.Hour + time.Minute - 59*time.Second, left: 0},
		{name: "the oldest minute frees the wait", limit: 2, writes: []time.Duration{0, 10 * time.Minute}, at: 30 * time.Minute,
			wait: 31 * time.Minute, left: 0},
		{name: "an hour later a write still counts", limit: 2, writes: []time.Duration{0, 30 * time.Second}, at: time.Hour, left: 0,
			wait: time.Minute},
		{name: "an hour and a minute later the writes have aged out", limit: 2, writes: []time.Duration{0, 30 * time.Second},
			at: time.Hour + time.Minute, left: 2},
		// A write at a minute's last second still counts sixty minutes
		// later: no sixty-minute span holds two writes of a limit of one.
		{name: "a write counts until the end of its minute an hour on", limit: 1, writes: []time.Duration{59 * time.Second},
			at: time.Hour + time.Minute - time.Second, wait: time.Second, left: 0},
		{name: "one write a minute, limit 60", limit: 60, writes: everyMinute(60), at: 61 * time.Minute, left: 1},
		{name: "slots reused after the hour", limit: 2, writes: []time.Duration{0, 61 * time.Minute, 61 * time.Minute},
			at: 61*time.Minute + time.Second, wait: time.Hour + time.Minute - time.Second, left: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newRateBudgetLimit(tc.limit)
			for i, w := range tc.writes {
				if err := b.check(OpDelete, http.MethodDelete, start.Add(w)); err != nil {
					t.Fatalf("write %d at +%v: %v; want it let out", i, w, err)
				}
			}
			now := start.Add(tc.at)
			if left, ok := b.remainingAt(now); !ok || left != tc.left {
				t.Errorf("remaining = %d, %v; want %d, true", left, ok, tc.left)
			}
			err := b.check(OpPut, http.MethodPut, now)
			if tc.wait == 0 {
				if err != nil {
					t.Errorf("next write: %v; want it let out", err)
				}
				return
			}
			se, ok := err.(*StatusError)
			if !ok || se.Status != http.StatusTooManyRequests || !se.NotSent || !se.OwnBudget || se.RetryAfter != tc.wait {
				t.Fatalf("next write = %#v; want a not-sent 429 of kvgate's own budget with RetryAfter %v", err, tc.wait)
			}
			if err := b.check(OpGet, http.MethodGet, now); err != nil {
				t.Errorf("read with the budget spent: %v; want reads never refused", err)
			}
		})
	}
}

func everyMinute(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * time.Minute
	}
	return out
}

// TestBudgetRemainingIsTheLower checks what the write budget gauge reads:
// unknown without either budget, and the lower of Fastly's and kvgate's
// own once known.
func TestBudgetRemainingIsTheLower(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_750_000_000, 0)
	for _, tc := range []struct {
		name   string
		limit  int64
		fastly string // Fastly-RateLimit-Remaining of a write answer; "" for none
		want   int64
		ok     bool
	}{
		{name: "neither", want: -1, ok: false},
		{name: "fastly only", fastly: "900", want: 900, ok: true},
		{name: "own only", limit: 50, want: 50, ok: true},
		{name: "own lower", limit: 50, fastly: "900", want: 50, ok: true},
		{name: "fastly lower", limit: 5000, fastly: "900", want: 900, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newRateBudgetLimit(tc.limit)
			if tc.fastly != "" {
				b.update(http.MethodPut, budgetHeader(tc.fastly, now.Unix()+600))
			}
			if got, ok := b.remainingAt(now); got != tc.want || ok != tc.ok {
				t.Errorf("remaining = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
