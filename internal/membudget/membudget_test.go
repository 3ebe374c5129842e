package membudget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// checkEmpty fails t unless b holds nothing and nobody waits.
func checkEmpty(t *testing.T, b *Budget) {
	t.Helper()
	if s := b.Stats(); s.Held != 0 || s.Waiters != 0 {
		t.Errorf("after the scenario the budget holds %d bytes with %d waiters, want 0 and 0", s.Held, s.Waiters)
	}
	if s := b.Stats(); s.MaxHeld > s.Size {
		t.Errorf("max held %d exceeds the budget's %d", s.MaxHeld, s.Size)
	}
}

// waitForWaiters waits until b has n waiters.
func waitForWaiters(t *testing.T, b *Budget, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Waiters != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiters = %d, want %d", b.Stats().Waiters, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAcquireWaitsForRelease(t *testing.T) {
	t.Parallel()
	b := New(100)
	got, err := b.Acquire(t.Context(), 80)
	if err != nil || got != 80 {
		t.Fatalf("Acquire(80) = %d, %v", got, err)
	}
	acquired := make(chan error, 1)
	go func() {
		_, err := b.Acquire(t.Context(), 50)
		acquired <- err
	}()
	waitForWaiters(t, b, 1)
	select {
	case err := <-acquired:
		t.Fatalf("Acquire(50) returned %v while 80 of 100 were held", err)
	default:
	}
	b.Release(80)
	if err := <-acquired; err != nil {
		t.Fatalf("Acquire(50) after release: %v", err)
	}
	b.Release(50)
	checkEmpty(t, b)
	if s := b.Stats(); s.MaxHeld != 80 {
		t.Errorf("MaxHeld = %d, want 80", s.MaxHeld)
	}
}

func TestAcquireFailsWhenContextEnds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) (context.Context, context.CancelFunc)
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 400*time.Millisecond) // a margin of 100 ms: room for a loaded machine
		}},
		{"cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := New(10)
			held, _ := b.Acquire(t.Context(), 10)
			ctx, cancel := tc.ctx(t.Context())
			defer cancel()
			_, err := b.Acquire(ctx, 1)
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Acquire on a full budget = %v, want ErrExhausted", err)
			}
			if tc.name == "deadline" && ctx.Err() != nil {
				t.Errorf("the wait ended with the deadline; it should give up before it, so the caller hears why")
			}
			b.Release(held)
			checkEmpty(t, b)
		})
	}
}

func TestAcquireLargerThanBudgetTakesAll(t *testing.T) {
	t.Parallel()
	b := New(10)
	got, err := b.Acquire(t.Context(), 25)
	if err != nil || got != 10 {
		t.Fatalf("Acquire(25) of 10 = %d, %v; want the whole budget", got, err)
	}
	b.Release(got)
	checkEmpty(t, b)
}

func TestManyAcquirersNeverExceedBudget(t *testing.T) {
	t.Parallel()
	b := New(1000)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for range 100 {
				n, err := b.Acquire(t.Context(), int64(1+i*37%400))
				if err != nil {
					t.Error(err)
					return
				}
				b.Release(n)
			}
		})
	}
	wg.Wait()
	checkEmpty(t, b)
}

func TestAccount(t *testing.T) {
	t.Parallel()
	b := New(100)
	a := NewAccount(b)
	a.Bind(t.Context())
	if err := a.ChargeMessage(40); err != nil {
		t.Fatal(err)
	}
	// 30 of the message's 40 move to a charge; 30 more are acquired.
	line, err := a.Take(t.Context(), 30)
	if err != nil || line.Bytes() != 30 {
		t.Fatalf("Take(30) = %d, %v", line.Bytes(), err)
	}
	big, err := a.Take(t.Context(), 40)
	if err != nil || big.Bytes() != 40 {
		t.Fatalf("Take(40) = %d, %v", big.Bytes(), err)
	}
	if held := b.Stats().Held; held != 70 {
		t.Errorf("held = %d, want 70 (the message's 40 and 30 more)", held)
	}
	a.ReleaseMessage()
	for range 2 { // a retried read takes nothing more
		if err := a.ReserveResponse(t.Context(), 20); err != nil {
			t.Fatal(err)
		}
	}
	if held := b.Stats().Held; held != 90 {
		t.Errorf("held = %d, want 90", held)
	}
	line.Release()
	big.Release()
	a.Close()
	checkEmpty(t, b)

	var none *Account // no budget: everything granted
	if err := none.ChargeMessage(1 << 40); err != nil {
		t.Errorf("nil account: %v", err)
	}
	if c, err := none.Take(t.Context(), 1<<40); err != nil || c.Bytes() != 0 {
		t.Errorf("nil account Take = %d, %v", c.Bytes(), err)
	}
	if a := AccountFrom(WithAccount(t.Context(), a)); a == nil {
		t.Error("AccountFrom(WithAccount) = nil")
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"268435456", 256 << 20, true},
		{"256MiB", 256 << 20, true},
		{"1 GiB", 1 << 30, true},
		{"64KiB", 64 << 10, true},
		{"2TiB", 2 << 40, true},
		{"256MB", 0, false},
		{"-1", 0, false},
		{"lots", 0, false},
		{"99999999999TiB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := FormatSize(256 << 20); s != "256MiB" {
		t.Errorf("FormatSize(256MiB) = %q", s)
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	const maxValue = 25 << 20
	for _, tc := range []struct {
		memory, want int64
	}{
		{16 << 30, 4 << 30},       // a quarter
		{512 << 20, DefaultFloor}, // never below the floor
		{1 << 40, DefaultCap},     // nor above the cap
		{0, fallbackMemory / 4},   // memory unknown
	} {
		if got := Default(tc.memory, maxValue); got != tc.want {
			t.Errorf("Default(%d) = %d, want %d", tc.memory, got, tc.want)
		}
	}
	if got, least := Default(512<<20, 200<<20), Minimum(200<<20); got != least {
		t.Errorf("Default with 200 MiB values = %d, want the minimum %d", got, least)
	}
	if AvailableMemory() <= 0 {
		t.Log("machine memory unknown here; the default falls back")
	}
}
