package membudget

// An RPC that reads several values at once, each held for its own time
// (CopyItems: a value is held from its read until it is copied into a
// batch body), cannot keep them in its account's single response
// reservation. Each read then reserves on an account of its own, a share
// of the RPC's, and hands the reservation on as a [Charge].

// Share returns a new, empty account drawing on a's budget, for one part
// of the RPC that holds bytes on its own schedule; nil when a is nil.
// Close it, or move what it holds out with [Account.TakeResponse], when
// that part is done.
func (a *Account) Share() *Account {
	if a == nil {
		return nil
	}
	return NewAccount(a.budget)
}

// TakeResponse moves what the account holds for its response into a
// Charge, which its holder releases; the account then holds no response.
func (a *Account) TakeResponse() Charge {
	if a == nil {
		return Charge{}
	}
	a.mu.Lock()
	n := a.response
	a.response = 0
	a.mu.Unlock()
	return Charge{b: a.budget, n: n}
}

// TryTake returns a charge of n bytes if the budget has them free now,
// and an empty charge otherwise: it never waits. It lets a caller that
// already holds budget top its charge up without waiting while it holds
// (which could leave waiters each holding what the others need).
func (a *Account) TryTake(n int64) Charge {
	if a == nil || n <= 0 {
		return Charge{}
	}
	b := a.budget
	if n > b.size || !b.sem.TryAcquire(n) {
		return Charge{}
	}
	held := b.held.Add(n)
	for {
		peak := b.maxHeld.Load()
		if held <= peak || b.maxHeld.CompareAndSwap(peak, held) {
			break
		}
	}
	return Charge{b: b, n: n}
}
