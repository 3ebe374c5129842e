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
