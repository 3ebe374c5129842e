package service

import "sort"

// indexRange is a run of item positions, start inclusive, end exclusive.
type indexRange struct{ start, end uint64 }

// indexRanges is a set of item positions kept as ordered, merged runs.
// Batches finish roughly in stream order, so a long stream of written
// items stays a handful of runs rather than one entry per item.
type indexRanges []indexRange

// add inserts i, merging it with the runs it touches.
func (rs *indexRanges) add(i uint64) {
	r := *rs
	// The first run that ends at or after i.
	n := sort.Search(len(r), func(k int) bool { return r[k].end >= i })
	switch {
	case n < len(r) && r[n].start <= i && i < r[n].end:
		return // already present
	case n < len(r) && r[n].end == i:
		r[n].end++
		if n+1 < len(r) && r[n+1].start == r[n].end {
			r[n].end = r[n+1].end
			r = append(r[:n+1], r[n+2:]...)
		}
	case n < len(r) && r[n].start == i+1:
		r[n].start = i
	default:
		r = append(r, indexRange{})
		copy(r[n+1:], r[n:])
		r[n] = indexRange{start: i, end: i + 1}
	}
	*rs = r
}
