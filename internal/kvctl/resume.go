package kvctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

// Defaults of the flags that bound automatic resumes.
const (
	defaultRetries = 5
	defaultMaxWait = 2 * time.Minute
	// resumeBackoff is the first wait before resuming after an early end
	// that named no wait; it doubles with each early end in a row, up to
	// resumeBackoffMax.
	resumeBackoff    = 500 * time.Millisecond
	resumeBackoffMax = 10 * time.Second
)

// resumer decides whether a call that ended early is made again from
// where it stopped, and waits before it is.
type resumer struct {
	c       *cli
	verb    string
	retries int           // early ends in a row, without progress, that are resumed
	maxWait time.Duration // the longest RetryInfo wait that is honoured
	inARow  int
}

// register registers --retries, described by retriesHelp, and --max-wait
// on cmd.
func (r *resumer) register(cmd *cobra.Command, retries int, retriesHelp string) {
	cmd.Flags().IntVar(&r.retries, "retries", retries, retriesHelp)
	cmd.Flags().DurationVar(&r.maxWait, "max-wait", defaultMaxWait, "longest wait a rate limit's retry delay may ask for before a resume; longer ones stop with the cursor")
}

// again reports whether to resume after err, having waited as long as
// the error asks; progressed says whether the call that ended settled
// anything, which resets the count of early ends in a row.
func (r *resumer) again(ctx context.Context, err error, progressed bool) bool {
	if progressed {
		r.inARow = 0
	}
	if ctx.Err() != nil {
		return false
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	wait := min(resumeBackoff<<min(r.inARow, 8), resumeBackoffMax)
	switch ce.Code() {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded:
		// kvgate shutting down, the upstream down for a moment, or the
		// server's cap on a call's length: the next call can do better.
		if ri, ok := detail[*errdetails.RetryInfo](ce); ok {
			wait = max(wait, ri.GetRetryDelay().AsDuration())
		}
	case connect.CodeResourceExhausted:
		ri, ok := detail[*errdetails.RetryInfo](ce)
		if !ok {
			return false // no word on when: not for us to guess
		}
		wait = ri.GetRetryDelay().AsDuration()
	default:
		return false
	}
	if r.inARow >= r.retries {
		return false
	}
	if wait > r.maxWait {
		fmt.Fprintf(r.c.stderr, "kvctl: %s: %v; the retry delay %v is longer than --max-wait %v\n", r.verb, err, wait, r.maxWait)
		return false
	}
	r.inARow++
	fmt.Fprintf(r.c.stderr, "kvctl: %s: %v; resuming in %v (%d of %d)\n", r.verb, err, wait.Round(time.Millisecond), r.inARow, r.retries)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// detail returns the first detail of type T that ce carries.
func detail[T proto.Message](ce *connect.Error) (T, bool) {
	for _, d := range ce.Details() {
		if m, err := connectproto.UnmarshalErrorDetail(d); err == nil {
			if t, ok := m.(T); ok {
				return t, true
			}
		}
	}
	var zero T
	return zero, false
}

// resumeError is a bulk call that stopped for good before it was done:
// the error, and the cursor that resumes it (empty: from the start).
type resumeError struct {
	err    error
	cursor string
	// again is the command line that resumes, without --cursor.
	again string
}

func (e resumeError) Error() string { return e.err.Error() }
func (e resumeError) Unwrap() error { return e.err }
