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

// put returns a body once no request reads it any more. Only bodies no
// larger than a new one are kept: a batch is charged to the memory budget
// for the lines it holds, and a recycled body larger than that would hold
// memory no charge accounts for. Larger ones are left to the GC.
func (p *bodyPool) put(b []byte) {
	if cap(b) == 0 || cap(b) > newBodyBytes(p.maxBytes) {
		return
	}
	p.pool.Put(&b)
}

func newBodyBytes(maxBytes int) int { return min(maxBytes, 64<<10) }
