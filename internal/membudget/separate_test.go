package membudget

import "testing"

// TestSeparate checks that each separate account holds its own
// reservation, on the parent's budget, until it is closed, whereas
// reservations on one account do not add up.
func TestSeparate(t *testing.T) {
	t.Parallel()
	b := New(1000)
	parent := NewAccount(b)
	ctx := WithAccount(t.Context(), parent)
	var accounts []*Account
	for range 3 {
		rctx, a := Separate(ctx)
		if AccountFrom(rctx) != a || a == parent {
			t.Fatal("Separate: the context does not carry a new account")
		}
		if err := ReserveResponseValue(rctx, 100); err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, a)
	}
	if held := b.Stats().Held; held != 600 {
		t.Errorf("three separate reads of 100 bytes hold %d, want 600 (each value and its message)", held)
	}
	accounts[0].Close()
	if held := b.Stats().Held; held != 400 {
		t.Errorf("after one read is closed the budget holds %d, want 400", held)
	}
	accounts[1].Close()
	accounts[2].Close()
	parent.Close()
	checkEmpty(t, b)

	if rctx, a := Separate(t.Context()); a != nil || rctx != t.Context() {
		t.Error("Separate without an account made one")
	}
}
