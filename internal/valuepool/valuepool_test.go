package valuepool

import (
	"context"
	"sync"
	"testing"
)

func TestClass(t *testing.T) {
	t.Parallel()
	cases := []struct {
		n, wantIndex, wantSize int
	}{
		{0, 0, 1024}, {1, 0, 1024}, {1024, 0, 1024},
		{1025, 1, 1152}, {1152, 1, 1152}, {1153, 2, 1280}, {2048, 8, 2048}, {2049, 9, 2304},
		{64 << 10, 48, 64 << 10}, {64<<10 + 1, 49, 72 << 10},
		{25 << 20, 1 + 14*8 + 4, 26 << 20},
		{MaxPooled, len(classes) - 1, MaxPooled}, {MaxPooled + 1, -1, MaxPooled + 1},
	}
	for _, tc := range cases {
		if i, size := class(tc.n); i != tc.wantIndex || size != tc.wantSize {
			t.Errorf("class(%d) = %d, %d; want %d, %d", tc.n, i, size, tc.wantIndex, tc.wantSize)
		}
	}
	// Every class is larger than the one before, and within an eighth
	// of the sizes it holds.
	prev := 0
	for n := 1; n <= MaxPooled; n += 1 + n/100 {
		i, size := class(n)
		if i < prev || size < n || (n > 1024 && size-n > n/8) {
			t.Fatalf("class(%d) = %d, %d after class %d", n, i, size, prev)
		}
		prev = i
	}
}

// TestBuffer checks the buffers' lengths and capacities: exact length
// always, a power-of-two capacity under a lease up to MaxPooled, and
// exactly the value's size beyond it or without a lease.
func TestBuffer(t *testing.T) {
	t.Parallel()
	leased, lease := WithLease(context.Background())
	defer lease.Release()
	cases := []struct {
		name    string
		ctx     context.Context
		n       int
		wantCap int
	}{
		{"no lease", context.Background(), 1000, 1000},
		{"no lease, large", context.Background(), 3 << 20, 3 << 20},
		{"small", leased, 10, 1 << 10},
		{"1 KiB", leased, 1 << 10, 1 << 10},
		{"64 KiB", leased, 64 << 10, 64 << 10},
		{"just over 64 KiB", leased, 64<<10 + 1, 72 << 10},
		{"25 MiB", leased, 25 << 20, 26 << 20},
		{"beyond the pool", leased, MaxPooled + 1, MaxPooled + 1},
	}
	for _, tc := range cases {
		b := Buffer(tc.ctx, tc.n)
		if len(b) != tc.n || cap(b) != tc.wantCap {
			t.Errorf("%s: Buffer(%d) has len %d cap %d, want len %d cap %d", tc.name, tc.n, len(b), cap(b), tc.n, tc.wantCap)
		}
	}
}

// TestLease checks that a lease keeps every buffer it lends, however
// many and from however many goroutines, returns them once, and lends
// nothing it would return after it is released.
func TestLease(t *testing.T) {
	t.Parallel()
	ctx, lease := WithLease(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _ = Buffer(ctx, 4096) })
	}
	wg.Wait()
	if kept := lease.n + len(lease.more); kept != 8 {
		t.Fatalf("lease keeps %d buffers, want 8", kept)
	}
	lease.Release()
	lease.Release() // a second release does nothing
	if kept := lease.n + len(lease.more); kept != 0 {
		t.Fatalf("released lease keeps %d buffers", kept)
	}
	if b := Buffer(ctx, 100); len(b) != 100 {
		t.Fatalf("Buffer after Release has len %d", len(b))
	}
	if kept := lease.n + len(lease.more); kept != 0 {
		t.Fatalf("released lease took a buffer back")
	}
}

// TestPutRefusesStrangers checks that only buffers of a class's exact
// capacity go back into the pool.
func TestPutRefusesStrangers(t *testing.T) {
	t.Parallel()
	odd := make([]byte, 0, 3000)
	put(&odd) // must not panic, must not be pooled
	huge := make([]byte, 0, 2*MaxPooled)
	put(&huge)
	for range 4 {
		if b := get(3000); cap(*b) != 3072 {
			t.Fatalf("get(3000) has cap %d, want 3072", cap(*b))
		}
	}
}
