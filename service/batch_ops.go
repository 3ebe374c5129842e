package service

import (
	"fmt"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// run carries out one op. It runs on its own goroutine and touches no
// batcher state but its configuration.
func (b *batcher) run(op *writeOp) opResult {
	if op.single != nil {
		return b.runSingle(op)
	}
	return b.runBatch(op)
}

// runSingle sends a single-item PUT. A failure that concerns the item (or
// whose outcome is open) is the item's; any other is the call's.
func (b *batcher) runSingle(op *writeOp) opResult {
	item := op.single
	err := b.kv.PutItem(b.ctx, b.store, item.GetKey(), item.GetValue(), putOptions(item, item.IfGenerationMatch))
	if err == nil {
		return opResult{written: op.indexes}
	}
	if k := upstream.KindOf(err); k == upstream.KindOutcomeUnknown || k.ItemLevel() {
		return opResult{failures: []*kvv1.BatchFailure{
			batchFailure(op.indexes[0], item.GetKey(), b.words.fromUpstream(err, itemSubject)),
		}}
	}
	return opResult{callErr: b.words.fromUpstream(err, storeSubject)}
}

// runBatch sends the op's lines as one batch PUT. Fastly reports bad lines
// by index and does not say whether the other lines of such a batch were
// applied, so the lines not reported bad are sent again (they are upserts)
// until a batch carrying them succeeds; only then are they written.
func (b *batcher) runBatch(op *writeOp) opResult {
	var res opResult
	lines := make([]int, len(op.keys)) // positions in op of the lines being sent
	for i := range lines {
		lines[i] = i
	}
	body := op.body
	b.inFlight.Add(int64(len(body)))
	defer b.inFlight.Add(-int64(len(body)))
	for len(lines) > 0 {
		out, err := b.kv.PutBatch(b.ctx, b.store, body)
		if err != nil {
			res.callErr = b.words.fromUpstream(err, storeSubject)
			return res
		}
		if len(out.LineErrors) == 0 {
			for _, l := range lines {
				res.written = append(res.written, op.indexes[l])
			}
			return res
		}
		bad := make(map[int]bool, len(out.LineErrors))
		for _, le := range out.LineErrors {
			if le.Index >= len(lines) || bad[le.Index] {
				res.callErr = b.words.fromUpstream(&upstream.ResponseError{Op: upstream.OpBatch,
					Reason: fmt.Sprintf("line error for line %d of a %d-line batch", le.Index, len(lines))}, storeSubject)
				return res
			}
			bad[le.Index] = true
			l := lines[le.Index]
			res.failures = append(res.failures, &kvv1.BatchFailure{
				Index:  op.indexes[l],
				Key:    op.keys[l],
				Code:   wireErrors[le.Kind()].code.String(),
				Reason: b.words.say("Fastly rejected the item: ") + le.Reason,
			})
		}
		kept := lines[:0]
		var next []byte
		for i, l := range lines {
			if !bad[i] {
				kept = append(kept, l)
				next = append(next, op.lineBytes(l)...)
			}
		}
		lines, body = kept, next
	}
	return res
}

// lineBytes returns line l of the op's original body.
func (op *writeOp) lineBytes(l int) []byte {
	start := 0
	if l > 0 {
		start = op.lineEnds[l-1]
	}
	return op.body[start:op.lineEnds[l]]
}
