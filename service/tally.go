package service

import (
	"cmp"
	"errors"
	"slices"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/rpcerr"
)

// tally accounts for the items of one batch write: how many arrived, which
// were written and which failed.
type tally struct {
	received uint64
	written  uint64
	ranges   indexRanges
	failures []*kvv1.BatchFailure
	// sink, when set, receives each outcome as it is known instead of the
	// tally keeping it: a copy reports its items as it goes, and keeps
	// nothing of those already reported.
	sink func(written []uint64, failures []*kvv1.BatchFailure)
}

// receive counts the next item and returns its index in the stream.
func (t *tally) receive() uint64 {
	t.received++
	return t.received - 1
}

func (t *tally) fail(f *kvv1.BatchFailure) {
	if t.sink != nil {
		t.sink(nil, []*kvv1.BatchFailure{f})
		return
	}
	t.failures = append(t.failures, f)
}

// record notes the items one op wrote and those that failed in it.
func (t *tally) record(written []uint64, failures []*kvv1.BatchFailure) {
	if t.sink != nil {
		t.written += uint64(len(written))
		t.sink(written, failures)
		return
	}
	for _, i := range written {
		t.ranges.add(i)
	}
	t.written += uint64(len(written))
	t.failures = append(t.failures, failures...)
}

// sortFailures puts the failures in stream order; ops finish in any order.
func (t *tally) sortFailures() {
	slices.SortFunc(t.failures, func(x, y *kvv1.BatchFailure) int {
		return cmp.Compare(x.GetIndex(), y.GetIndex())
	})
}

// response is the answer of a batch write that completed.
func (t *tally) response() *kvv1.BatchPutItemsResponse {
	t.sortFailures()
	return &kvv1.BatchPutItemsResponse{Written: t.written, Failures: t.failures}
}

// withProgress attaches a BatchProgress detail to err: which items were
// written and which failed before the batch write failed.
func (t *tally) withProgress(err error) error {
	t.sortFailures()
	cerr, ok := errors.AsType[*connect.Error](err)
	if !ok {
		cerr = connect.NewError(connect.CodeInternal, "internal error").WithCause(err)
	}
	progress := &kvv1.BatchProgress{Received: t.received, Failures: t.failures}
	for _, r := range t.ranges {
		progress.Written = append(progress.Written, &kvv1.IndexRange{Start: r.start, End: r.end})
	}
	return rpcerr.WithDetail(cerr, progress)
}
