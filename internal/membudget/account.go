package membudget

import (
	"context"
	"sync"
)

// Account is what one RPC holds of a budget:
//
//   - the request message last read, charged before it is buffered
//     ([Account.ChargeMessage]) and released when the next one is read
//     or the RPC ends ([Account.ReleaseMessage]): by then the service has
//     copied what it keeps of it into batch bodies, taking that part of
//     the charge along ([Account.Take]);
//   - the response's value ([Account.ReserveResponse]), until the RPC
//     ends.
//
// [Account.Close] releases all of it when the RPC has answered. Methods
// are safe for concurrent use and do nothing on a nil Account.
type Account struct {
	budget *Budget

	mu       sync.Mutex
	ctx      context.Context // the RPC's: its deadline bounds waits
	message  int64
	response int64
	// beforeWait, when set, is called before the RPC waits for budget.
	beforeWait func()
}

// NewAccount returns an empty account drawing on b.
func NewAccount(b *Budget) *Account { return &Account{budget: b, ctx: context.Background()} }

type accountKey struct{}

// AccountKey returns the context key [WithAccount] sets, for a server that
// attaches request values to its requests' contexts its own way; the
// value must be an *Account.
func AccountKey() any { return accountKey{} }

// WithAccount returns ctx carrying a.
func WithAccount(ctx context.Context, a *Account) context.Context {
	return context.WithValue(ctx, accountKey{}, a)
}

// AccountFrom returns the account ctx carries, or nil.
func AccountFrom(ctx context.Context) *Account {
	a, _ := ctx.Value(accountKey{}).(*Account)
	return a
}

// Bind sets the context whose deadline bounds the waits of
// [Account.ChargeMessage]: the RPC's, once its deadline is known.
func (a *Account) Bind(ctx context.Context) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
}

// BeforeWait sets f to be called, on the RPC's goroutine, whenever the
// RPC is about to wait for budget: it lets go of what it can (a batch
// write sends its open batch), so that RPCs waiting for budget never hold
// on to budget that other waiters need.
func (a *Account) BeforeWait(f func()) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.beforeWait = f
	a.mu.Unlock()
}

// acquire takes n bytes in one step, calling the BeforeWait function
// before it waits.
func (a *Account) acquire(ctx context.Context, n int64) (int64, error) {
	a.mu.Lock()
	f := a.beforeWait
	a.mu.Unlock()
	return a.budget.acquire(ctx, n, f)
}

// ChargeMessage takes n bytes for a request message about to be read,
// in one step, waiting on the bound context.
func (a *Account) ChargeMessage(n int64) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	ctx := a.ctx
	a.mu.Unlock()
	got, err := a.acquire(ctx, n)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.message += got
	a.mu.Unlock()
	return nil
}

// ReleaseMessage releases what is left of the last message's charge.
func (a *Account) ReleaseMessage() {
	if a == nil {
		return
	}
	a.mu.Lock()
	n := a.message
	a.message = 0
	a.mu.Unlock()
	a.budget.Release(n)
}

// SettleMessage keeps only n bytes of the last message's charge: what the
// decoded message itself holds once the buffers it was read and decoded
// through are gone. An RPC about to wait for more (a read's response)
// then holds no more than it uses.
func (a *Account) SettleMessage(n int64) {
	if a == nil {
		return
	}
	a.mu.Lock()
	extra := max(a.message-max(n, 0), 0)
	a.message -= extra
	a.mu.Unlock()
	a.budget.Release(extra)
}

// Take returns a charge of n bytes for something made from the current
// message that outlives it (a batch line, an item kept for a single
// PUT): moved from the message's charge, and only what that lacks is
// acquired, waiting on ctx.
func (a *Account) Take(ctx context.Context, n int64) (Charge, error) {
	if a == nil || n <= 0 {
		return Charge{}, nil
	}
	a.mu.Lock()
	moved := min(n, a.message)
	a.message -= moved
	a.mu.Unlock()
	got, err := a.acquire(ctx, n-moved)
	if err != nil {
		a.budget.Release(moved)
		return Charge{}, err
	}
	return Charge{b: a.budget, n: moved + got}, nil
}

// ReserveResponse makes sure the RPC holds at least n bytes for its
// response, held until [Account.Close]. Repeated calls (a retried read)
// take only what earlier ones did not.
func (a *Account) ReserveResponse(ctx context.Context, n int64) error {
	if a == nil {
		return nil
	}
	n = min(n, a.budget.Size())
	a.mu.Lock()
	more := n - a.response
	a.mu.Unlock()
	if more <= 0 {
		return nil
	}
	got, err := a.acquire(ctx, more)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.response += got
	a.mu.Unlock()
	return nil
}

// Close releases everything the account holds; call it once the RPC has
// answered. Charges handed out by Take are released by their holders.
func (a *Account) Close() {
	if a == nil {
		return
	}
	a.mu.Lock()
	n := a.message + a.response
	a.message, a.response = 0, 0
	a.mu.Unlock()
	a.budget.Release(n)
}

// ReserveResponseValue holds room for a response carrying a value of n
// bytes, for the RPC whose account ctx carries: the value as read from
// the upstream and its encoded response message, twice n.
func ReserveResponseValue(ctx context.Context, n int64) error {
	return AccountFrom(ctx).ReserveResponse(ctx, 2*n)
}
