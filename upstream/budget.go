package upstream

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateBudget keeps writes within two budgets, so that writes that would be
// refused fail fast (a 429 not sent) instead of spending the caller's
// deadline, and Fastly's hourly budget, which every non-read request
// counts against, is not spent by kvgate alone:
//
//   - Fastly's, learned from the Fastly-RateLimit-* headers of write
//     responses (and the 429s that carry them): once Fastly says none is
//     left, writes stay refused until its reset.
//   - kvgate's own, when configured ([ClientConfig.WriteBudget]): the
//     writes this client sends, counted over a rolling hour. KV responses
//     may carry no rate-limit headers at all, so this count is the only
//     budget kvgate can keep by itself.
//
// Reads are not rate-limited and never checked or counted.
type rateBudget struct {
	mu        sync.Mutex
	remaining int64 // Fastly's; -1 when unknown
	reset     time.Time
	own       ownBudget
}

func newRateBudget() *rateBudget { return &rateBudget{remaining: -1} }

// newRateBudgetLimit is newRateBudget with kvgate's own hourly limit;
// limit <= 0 sets none.
func newRateBudgetLimit(limit int64) *rateBudget {
	b := newRateBudget()
	b.own.limit = max(limit, 0)
	return b
}

func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// update records the budget a write's response reports.
func (b *rateBudget) update(method string, h http.Header) {
	if isRead(method) {
		return
	}
	rem := h.Get("Fastly-RateLimit-Remaining")
	if rem == "" {
		return
	}
	n, err := strconv.ParseInt(rem, 10, 64)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remaining = n
	if epoch, err := strconv.ParseInt(h.Get("Fastly-RateLimit-Reset"), 10, 64); err == nil {
		b.reset = time.Unix(epoch, 0)
	}
}

// wait is how long a write stays refused: the time to the reset while
// Fastly's budget is spent, else zero. Reads are never refused. kvgate's
// own budget is left out: a write it refuses is refused before it is sent,
// with its own wait.
func (b *rateBudget) wait(method string, now time.Time) time.Duration {
	if isRead(method) {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.remaining != 0 || !now.Before(b.reset) {
		return 0
	}
	return b.reset.Sub(now)
}

// check refuses a write while Fastly's budget is spent and not yet reset,
// or when kvgate's own budget has no write left in the rolling hour;
// otherwise it counts the write against kvgate's own budget, since the
// caller sends it next. Counting before sending keeps concurrent writes
// from overshooting the budget together.
func (b *rateBudget) check(op Op, method string, now time.Time) error {
	if isRead(method) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.remaining == 0 {
		if now.Before(b.reset) {
			return &StatusError{
				Op: op, Status: http.StatusTooManyRequests, RetryAfter: b.reset.Sub(now), NotSent: true,
				Body: "Fastly's write budget is spent until its reset; not sent",
			}
		}
		b.remaining = -1 // a new window: unknown until the next answer
	}
	if wait, ok := b.own.take(now); !ok {
		return &StatusError{
			Op: op, Status: http.StatusTooManyRequests, RetryAfter: wait, NotSent: true, OwnBudget: true,
			Body: "kvgate's own hourly write budget (-write-budget) is spent; not sent",
		}
	}
	return nil
}

// remainingAt is the write budget left: the lower of Fastly's last word
// and kvgate's own budget, ok false when neither is known.
func (b *rateBudget) remainingAt(now time.Time) (remaining int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	remaining, ok = b.remaining, b.remaining >= 0
	if own, set := b.own.left(now); set && (!ok || own < remaining) {
		remaining, ok = own, true
	}
	return remaining, ok
}

// The rolling hour of kvgate's own budget, kept in one-minute slots: a
// write counts from its minute until the end of the same minute an hour
// later, between sixty and sixty-one minutes, so no span of sixty minutes
// ever holds more than the limit, however Fastly aligns its own window.
// (Sixty slots would free a write made at a minute's last second at the
// start of the sixtieth minute after: 59 minutes later.)
const (
	ownSlot  = time.Minute
	ownSlots = int(time.Hour/ownSlot) + 1
)

// ownBudget counts kvgate's own writes against a limit per rolling hour.
// Its memory is fixed whatever the limit. The zero value has no limit.
type ownBudget struct {
	limit int64
	slots [ownSlots]ownSlotCount
}

// ownSlotCount is the writes of one minute, numbered from the Unix epoch.
type ownSlotCount struct {
	minute int64
	n      int64
}

func slotMinute(now time.Time) int64 { return now.Unix() / int64(ownSlot/time.Second) }

// used is the writes counted in the rolling hour ending in now's minute.
func (o *ownBudget) used(now time.Time) int64 {
	cur := slotMinute(now)
	var n int64
	for _, s := range o.slots {
		if s.minute > cur-int64(ownSlots) && s.minute <= cur {
			n += s.n
		}
	}
	return n
}

// take counts one write at now, or, when the limit is reached, reports
// how long until enough of the hour's writes have aged out for one more.
func (o *ownBudget) take(now time.Time) (wait time.Duration, ok bool) {
	if o.limit <= 0 {
		return 0, true
	}
	cur := slotMinute(now)
	if used := o.used(now); used >= o.limit {
		// Walk the slots from the oldest minute of the hour: once the
		// writes still counted after a slot ages out are below the limit,
		// that slot's end of life is the wait.
		for m := cur - int64(ownSlots) + 1; m <= cur; m++ {
			s := o.slots[m%int64(ownSlots)]
			if s.minute != m {
				continue
			}
			used -= s.n
			if used < o.limit {
				free := time.Unix((m+int64(ownSlots))*int64(ownSlot/time.Second), 0)
				return max(free.Sub(now), time.Second), false
			}
		}
		return time.Hour, false // not reached: the hour's slots hold every write counted
	}
	s := &o.slots[cur%int64(ownSlots)]
	if s.minute != cur {
		*s = ownSlotCount{minute: cur}
	}
	s.n++
	return 0, true
}

// left is the writes left in the rolling hour; set is false without a
// limit.
func (o *ownBudget) left(now time.Time) (n int64, set bool) {
	if o.limit <= 0 {
		return 0, false
	}
	return max(o.limit-o.used(now), 0), true
}
