package service

import "sync"

// bodyPool recycles batch bodies across batches and streams, so a long
// upload reuses a few buffers instead of growing a new one per batch.
type bodyPool struct {
	pool     sync.Pool
	maxBytes int
}

func newBodyPool(maxBytes int) *bodyPool { return &bodyPool{maxBytes: maxBytes} }

func (p *bodyPool) get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, newBodyBytes(p.maxBytes))
}

// put returns a body once no request reads it any more. Bodies that grew
// past twice the batch limit (one oversized line) are left to the GC.
// A recycled body can be larger than the lines of its next batch, which
// are what the memory budget is charged for (twice over, for growth): the
// difference is at most a batch body per batch write in flight, and
// idle bodies go with the next garbage collections.
func (p *bodyPool) put(b []byte) {
	if cap(b) == 0 || cap(b) > 2*p.maxBytes {
		return
	}
	p.pool.Put(&b)
}

func newBodyBytes(maxBytes int) int { return min(maxBytes, 64<<10) }
