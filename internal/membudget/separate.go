package membudget

import "context"

// Separate returns ctx carrying an account of its own, drawing on the
// budget of the account ctx carries, and that account; ctx unchanged and
// a nil account when ctx carries none. An RPC that reads several values
// at once (GetItems) gives each read one: [Account.ReserveResponse] on
// a shared account takes only the largest of the reservations, not their
// sum, and holds it until the RPC ends, while each read's value must be
// held for itself and let go as soon as its message is sent. Close the
// returned account then.
func Separate(ctx context.Context) (context.Context, *Account) {
	parent := AccountFrom(ctx)
	if parent == nil {
		return ctx, nil
	}
	a := &Account{budget: parent.budget, ctx: ctx}
	return WithAccount(ctx, a), a
}
