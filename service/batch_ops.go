package service

import (
	"context"
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

// runBatch sends the op's lines as one batch PUT; see putLines.
func (b *batcher) runBatch(op *writeOp) opResult {
	var res opResult
	b.inFlight.Add(int64(len(op.body)))
	defer b.inFlight.Add(-int64(len(op.body)))
	refused, err := putLines(b.ctx, b.kv, b.store, op.body, op.lineEnds)
	for l := range op.keys {
		le, bad := refused[l]
		switch {
		case bad:
			res.failures = append(res.failures, &kvv1.BatchFailure{
				Index:  op.indexes[l],
				Key:    op.keys[l],
				Code:   wireErrors[le.Kind()].code.String(),
				Reason: b.words.say("Fastly rejected the item: ") + le.Reason,
			})
		case err == nil:
			res.written = append(res.written, op.indexes[l])
		}
	}
	if err != nil {
		res.callErr = b.words.fromUpstream(err, storeSubject)
	}
	return res
}

// putLines sends the NDJSON lines of body, line i ending at lineEnds[i],
// as a batch PUT to store. Fastly reports bad lines by index and does not
// say whether the other lines of such a batch were applied, so the lines
// not reported bad are sent again (they are upserts) until a batch
// carrying them succeeds; only then are they written. refused holds the
// lines Fastly refused, by position in body. err is a failure of the call
// as a whole: the lines neither refused nor known written when it came
// are not written, as far as anyone can tell.
func putLines(ctx context.Context, kv Upstream, store string, body []byte, lineEnds []int) (refused map[int]upstream.BatchLineError, err error) {
	lines := make([]int, len(lineEnds)) // positions in body of the lines being sent
	for i := range lines {
		lines[i] = i
	}
	lineBytes := func(l int) []byte {
		start := 0
		if l > 0 {
			start = lineEnds[l-1]
		}
		return body[start:lineEnds[l]]
	}
	sent := body
	for len(lines) > 0 {
		out, err := kv.PutBatch(ctx, store, sent)
		if err != nil {
			return refused, err
		}
		if len(out.LineErrors) == 0 {
			return refused, nil
		}
		bad := make(map[int]bool, len(out.LineErrors))
		for _, le := range out.LineErrors {
			if le.Index >= len(lines) || bad[le.Index] {
				return refused, &upstream.ResponseError{Op: upstream.OpBatch,
					Reason: fmt.Sprintf("line error for line %d of a %d-line batch", le.Index, len(lines))}
			}
			bad[le.Index] = true
			if refused == nil {
				refused = make(map[int]upstream.BatchLineError)
			}
			refused[lines[le.Index]] = le
		}
		kept := lines[:0]
		var next []byte
		for i, l := range lines {
			if !bad[i] {
				kept = append(kept, l)
				next = append(next, lineBytes(l)...)
			}
		}
		lines, sent = kept, next
	}
	return refused, nil
}
