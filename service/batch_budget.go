package service

import (
	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/internal/membudget"
)

// take charges the memory budget for n bytes of item index that the
// batcher keeps beyond its message (a batch line, an item for a single
// PUT). Refused, the item is reported failed and the error ends the
// batch write: the budget came free too late for the RPC's deadline.
//
// With credit (budget the caller already holds for the item), take never
// waits: it moves credit into the charge and adds what the budget has
// free at once of the rest. A caller that holds budget while it waits for
// more could deadlock with others doing the same; an item charged short
// is charged at least what its read reserved (see CopyItems).
func (b *batcher) take(index uint64, key string, n int, credit *membudget.Charge) (membudget.Charge, error) {
	if credit != nil {
		charge := *credit
		*credit = membudget.Charge{}
		if more := int64(n) - charge.Bytes(); more > 0 {
			charge.Add(b.acct.TryTake(more))
		}
		return charge, nil
	}
	charge, err := b.acct.Take(b.ctx, int64(n))
	if err != nil {
		cerr := budgetError(err)
		b.tally.fail(batchFailure(index, key, cerr))
		return membudget.Charge{}, cerr
	}
	return charge, nil
}

// yield is what a batch write does before it waits for memory budget: it
// sends its open batch and waits until none of its writes is left queued,
// so that while it waits it holds budget only for writes in flight, which
// release it when they end. Waiting RPCs thus never hold what other
// waiters need.
func (b *batcher) yield() {
	b.seal()
	for b.callErr == nil && len(b.queue) > 0 {
		b.collect(<-b.done)
	}
	if b.callErr != nil {
		b.releaseUnsent()
	}
}

// releaseUnsent releases what ops that will never be sent hold: the open
// batch and queued ops left behind when the batch write failed.
func (b *batcher) releaseUnsent() {
	if b.open != nil {
		b.open.charge.Release()
	}
	for _, op := range b.queue {
		op.charge.Release()
	}
}

// budgetError is the failure of a call refused memory budget.
func budgetError(err error) *connect.Error {
	return connect.NewError(connect.CodeResourceExhausted, membudget.PublicMessage).WithCause(err)
}
