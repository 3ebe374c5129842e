// Package membudget bounds the bytes kvgate holds for values in flight,
// across every RPC: request messages as they are read and decoded,
// batch bodies waiting for or riding an upstream PUT, and values read
// from the upstream for a response. A [Budget] is one server-wide
// weighted semaphore; callers wait for bytes (backpressure) and give up
// with [ErrExhausted] shortly before their deadline, so they hear why.
//
// An [Account] is one RPC's share: what its request messages, its
// response and its batch bodies hold. A nil *Budget or *Account stands
// for no budget: everything is granted at once.
package membudget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// ErrExhausted is the failure of a caller that could not get its bytes
// before its deadline.
var ErrExhausted = errors.New("memory budget for values in flight exhausted")

// PublicMessage is what a caller refused budget is told.
const PublicMessage = "kvgate is at its memory budget for values in flight and none came free before the deadline; retry later or with a longer deadline"

// Budget is a server-wide budget of bytes. It is safe for concurrent use.
type Budget struct {
	size    int64
	sem     *semaphore.Weighted
	held    atomic.Int64
	maxHeld atomic.Int64
	waiters atomic.Int64
}

// New returns a budget of size bytes; size must be positive.
func New(size int64) *Budget {
	if size <= 0 {
		panic(fmt.Sprintf("membudget.New: size %d is not positive", size))
	}
	return &Budget{size: size, sem: semaphore.NewWeighted(size)}
}

// Size is the budget in bytes; unlimited (math.MaxInt64) for a nil
// budget.
func (b *Budget) Size() int64 {
	if b == nil {
		return math.MaxInt64
	}
	return b.size
}

// Stats is a snapshot of a budget.
type Stats struct {
	// Size is the budget; Held the bytes held now; MaxHeld the most ever
	// held at once (never above Size).
	Size, Held, MaxHeld int64
	// Waiters is how many callers wait for bytes now.
	Waiters int64
}

// Stats returns the budget's current numbers; zero for a nil budget.
func (b *Budget) Stats() Stats {
	if b == nil {
		return Stats{}
	}
	return Stats{Size: b.size, Held: b.held.Load(), MaxHeld: b.maxHeld.Load(), Waiters: b.waiters.Load()}
}

// Acquire takes n bytes, waiting while they are held elsewhere, and
// returns how many it took: n, or the whole budget when n is larger, so
// that a single request larger than the budget runs alone rather than
// never. Release the returned amount. It fails with [ErrExhausted] when
// ctx ends first, or when ctx's deadline is near (see [waitContext]).
func (b *Budget) Acquire(ctx context.Context, n int64) (int64, error) {
	return b.acquire(ctx, n, nil)
}

// acquire is Acquire calling beforeWait, when not nil, before it waits.
func (b *Budget) acquire(ctx context.Context, n int64, beforeWait func()) (int64, error) {
	if b == nil || n <= 0 {
		return 0, nil
	}
	n = min(n, b.size)
	if !b.sem.TryAcquire(n) {
		if beforeWait != nil {
			beforeWait()
		}
		wctx, cancel := waitContext(ctx)
		defer cancel()
		b.waiters.Add(1)
		err := b.sem.Acquire(wctx, n)
		b.waiters.Add(-1)
		if err != nil {
			return 0, fmt.Errorf("%w: waited for %d bytes: %w", ErrExhausted, n, err)
		}
	}
	held := b.held.Add(n)
	for {
		peak := b.maxHeld.Load()
		if held <= peak || b.maxHeld.CompareAndSwap(peak, held) {
			break
		}
	}
	return n, nil
}

// Release returns n bytes taken by Acquire.
func (b *Budget) Release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.held.Add(-n)
	b.sem.Release(n)
}

// waitContext bounds a wait for bytes: it ends a little before ctx's
// deadline (a quarter of the time left, at most a second), so the caller
// still gets RESOURCE_EXHAUSTED, saying why, rather than its own
// deadline passing with no answer.
func waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(deadline)/4, time.Second)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// Charge is bytes held for one thing (a batch body, a single PUT's
// value) until it is done with them. The zero Charge holds nothing.
type Charge struct {
	b *Budget
	n int64
}

// Bytes is how many bytes c holds.
func (c Charge) Bytes() int64 { return c.n }

// Add merges o into c; both must come from the same budget.
func (c *Charge) Add(o Charge) {
	if o.b != nil {
		c.b = o.b
	}
	c.n += o.n
}

// Release returns c's bytes and empties it.
func (c *Charge) Release() {
	c.b.Release(c.n)
	c.n = 0
}
