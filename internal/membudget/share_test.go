package membudget

import (
	"context"
	"testing"
)

func TestShareTakeResponseTryTake(t *testing.T) {
	t.Parallel()
	b := New(100)
	parent := NewAccount(b)
	share := parent.Share()
	if err := share.ReserveResponse(context.Background(), 60); err != nil {
		t.Fatal(err)
	}
	charge := share.TakeResponse()
	share.Close() // holds nothing now: the charge has it
	if charge.Bytes() != 60 || b.Stats().Held != 60 {
		t.Fatalf("charge %d, held %d; want 60 and 60", charge.Bytes(), b.Stats().Held)
	}
	for _, tc := range []struct {
		n, want int64
	}{
		{50, 0},  // only 40 free: nothing, at once
		{40, 40}, // exactly what is free
		{1, 0},   // none left
		{0, 0},
		{-1, 0},
	} {
		got := parent.TryTake(tc.n)
		if got.Bytes() != tc.want {
			t.Errorf("TryTake(%d) = %d bytes; want %d", tc.n, got.Bytes(), tc.want)
		}
		charge.Add(got)
	}
	charge.Release()
	if c := parent.TryTake(101); c.Bytes() != 0 {
		t.Errorf("TryTake beyond the budget's size = %d bytes; want none", c.Bytes())
	}
	var none *Account
	if none.Share() != nil || none.TakeResponse().Bytes() != 0 || none.TryTake(5).Bytes() != 0 {
		t.Error("a nil account shares, holds or takes something")
	}
	checkEmpty(t, b)
}
