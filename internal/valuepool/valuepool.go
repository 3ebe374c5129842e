// Package valuepool lends the buffers GetItem reads values into, for the
// length of one RPC. A value is read from the upstream into a buffer sized
// from its Content-Length, handed to the response message, and copied out
// when connect-go marshals the message; after that nothing refers to it.
// Allocating a fresh buffer per call costs zeroing it and, above all, the
// garbage collections that follow: at 64 KiB values that was most of the
// CPU kvgate spent beyond a reverse proxy's. A [Lease] collects the
// buffers one RPC borrows and returns them all when the RPC has answered.
//
// Buffers are pooled by size class: 1 KiB, then eight classes between
// each power of two and the next, so a value's buffer is at most an
// eighth larger than the value (a 25 MiB value gets a 26 MiB buffer).
// Values up to Fastly's largest are pooled; idle buffers go with the
// garbage collections that find them unused, as everything in a sync.Pool
// does.
package valuepool

import (
	"context"
	"math/bits"
	"sync"
)

// MaxPooled is the largest buffer kept for reuse: 128 MiB, above Fastly's
// largest value.
const MaxPooled = 1 << maxShift

const (
	minShift   = 10 // the smallest class, 1 KiB
	maxShift   = 27
	subClasses = 8 // classes per power of two
)

var classes [1 + (maxShift-minShift)*subClasses]sync.Pool

// class returns the index and capacity of the smallest class holding n
// bytes; the index is -1 when n is beyond MaxPooled.
func class(n int) (index, size int) {
	switch {
	case n > MaxPooled:
		return -1, n
	case n <= 1<<minShift:
		return 0, 1 << minShift
	}
	k := bits.Len(uint(n - 1)) // 1<<(k-1) < n <= 1<<k
	base := 1 << (k - 1)
	step := base / subClasses
	sub := (n - base + step - 1) / step // 1..subClasses
	return 1 + (k-1-minShift)*subClasses + sub - 1, base + sub*step
}

// get returns a buffer of length n, pooled when its class is.
func get(n int) *[]byte {
	i, size := class(n)
	if i < 0 {
		b := make([]byte, n)
		return &b
	}
	if p, ok := classes[i].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, size)
	return &b
}

// put returns b to its class; buffers beyond MaxPooled, and any whose
// capacity is not a class's, are left to the garbage collector.
func put(b *[]byte) {
	i, size := class(cap(*b))
	if i < 0 || cap(*b) != size {
		return
	}
	*b = (*b)[:0]
	classes[i].Put(b)
}

// Lease is the buffers one RPC has borrowed. It is safe for concurrent
// use: an RPC may read several values at once.
type Lease struct {
	mu       sync.Mutex
	released bool
	first    [2]*[]byte // most RPCs borrow one buffer; no slice to grow
	n        int
	more     []*[]byte
}

type leaseKey struct{}

// WithLease returns ctx carrying a new lease, and the lease. Call
// [Lease.Release] once nothing refers to the buffers any more.
func WithLease(ctx context.Context) (context.Context, *Lease) {
	l := &Lease{}
	return context.WithValue(ctx, LeaseKey(), l), l
}

// LeaseKey returns the context key a lease is carried under, for a server
// that attaches request values to its requests' contexts its own way; the
// value must be a *Lease from [NewLease].
func LeaseKey() any { return leaseKey{} }

// NewLease returns an empty lease.
func NewLease() *Lease { return &Lease{} }

// Leased reports whether ctx carries a lease.
func Leased(ctx context.Context) bool {
	_, ok := ctx.Value(leaseKey{}).(*Lease)
	return ok
}

// Buffer returns a buffer of length n for a value, borrowed by the lease
// ctx carries, or a fresh one left to the garbage collector when ctx
// carries none. Its contents are not zeroed: the caller overwrites all n
// bytes or discards the buffer.
func Buffer(ctx context.Context, n int) []byte {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	if l == nil {
		return make([]byte, n)
	}
	b := get(n)
	// Once the lease is released (the RPC is over) the buffer is simply
	// the caller's, never returned to the pool.
	l.keep(b)
	return *b
}

func (l *Lease) keep(b *[]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.released:
	case l.n < len(l.first):
		l.first[l.n] = b
		l.n++
	default:
		l.more = append(l.more, b)
	}
}

// Release returns every buffer the lease borrowed to the pool. Buffers
// asked for after it are no longer pooled.
func (l *Lease) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	for _, b := range l.first[:l.n] {
		put(b)
	}
	for _, b := range l.more {
		put(b)
	}
	l.first, l.more, l.n = [2]*[]byte{}, nil, 0
}
