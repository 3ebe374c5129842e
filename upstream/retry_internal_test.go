package upstream

// White-box tests of the retry policy's arithmetic and decisions, without
// any network.

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// wantBackoffCap is min(MaxDelay, BaseDelay<<(attempt-1)) computed without
// overflow: the wait backoff(attempt) must lie in [cap/2, cap].
func wantBackoffCap(p RetryPolicy, attempt int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < attempt; i++ {
		if d > p.MaxDelay/2 {
			return p.MaxDelay
		}
		d *= 2
	}
	return min(d, p.MaxDelay)
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	policies := []struct {
		name string
		p    RetryPolicy
	}{
		{"small", RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 50 * time.Millisecond}},
		{"defaults", RetryPolicy{}.withDefaults()},
		{"odd durations", RetryPolicy{BaseDelay: 3 * time.Millisecond, MaxDelay: 7 * time.Millisecond}},
		{"base above the cap", RetryPolicy{BaseDelay: time.Second, MaxDelay: 500 * time.Millisecond}},
		{"10s to 1m", RetryPolicy{BaseDelay: 10 * time.Second, MaxDelay: time.Minute}},
		{"20s to 10m", RetryPolicy{BaseDelay: 20 * time.Second, MaxDelay: 10 * time.Minute}},
		{"1h to 100d", RetryPolicy{BaseDelay: time.Hour, MaxDelay: 100 * 24 * time.Hour}},
		{"near MaxInt64", RetryPolicy{BaseDelay: time.Duration(math.MaxInt64 / 4), MaxDelay: time.Duration(math.MaxInt64)}},
		// Doubling 1ns reaches an hour only after 42 doublings: the wait
		// must keep growing past 2^30 times BaseDelay.
		{"1ns to 1h", RetryPolicy{BaseDelay: time.Nanosecond, MaxDelay: time.Hour}},
		// BaseDelay<<30 wraps to 1<<30ns (about 1s) in 64 bits: a naive
		// shift makes the 31st and later waits tiny instead of MaxDelay.
		{"2^34+1ns to 1m", RetryPolicy{BaseDelay: 1<<34 + 1, MaxDelay: time.Minute}},
	}
	attempts := []int{1, 2, 3, 4, 5, 10, 20, 29, 30, 31, 32, 33, 40, 42, 43, 62, 63, 64, 65, 100, 1000, math.MaxInt32, math.MaxInt}
	for _, pol := range policies {
		t.Run(pol.name, func(t *testing.T) {
			t.Parallel()
			p := pol.p
			for _, attempt := range attempts {
				want := wantBackoffCap(p, attempt)
				seen := map[time.Duration]bool{}
				for range 200 {
					got := p.backoff(attempt)
					seen[got] = true
					if got < want/2 || got > want || got > p.MaxDelay {
						t.Errorf("{Base:%v Max:%v}.backoff(%d) = %v, want within [%v, %v]",
							p.BaseDelay, p.MaxDelay, attempt, got, want/2, want)
						return // one report per policy
					}
				}
				if want >= 1000 && len(seen) < 2 {
					t.Errorf("{Base:%v Max:%v}.backoff(%d) gave one value 200 times: no jitter", p.BaseDelay, p.MaxDelay, attempt)
				}
			}
		})
	}
}

func TestRetryPolicyWithDefaults(t *testing.T) {
	t.Parallel()
	def := RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}
	if got := DefaultRetryPolicy(); got != def {
		t.Errorf("DefaultRetryPolicy() = %+v, want %+v", got, def)
	}
	tests := []struct {
		in, want RetryPolicy
	}{
		{RetryPolicy{}, def},
		{RetryPolicy{MaxAttempts: -1, BaseDelay: -time.Second, MaxDelay: -time.Second}, def},
		{RetryPolicy{MaxAttempts: 1}, RetryPolicy{MaxAttempts: 1, BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}},
		{RetryPolicy{MaxAttempts: 9, BaseDelay: time.Millisecond, MaxDelay: time.Minute}, RetryPolicy{MaxAttempts: 9, BaseDelay: time.Millisecond, MaxDelay: time.Minute}},
		{RetryPolicy{BaseDelay: time.Second}, RetryPolicy{MaxAttempts: 4, BaseDelay: time.Second, MaxDelay: 5 * time.Second}},
	}
	for _, tt := range tests {
		if got := tt.in.withDefaults(); got != tt.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func dialErr() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 50 * time.Millisecond}
	status := func(code int) error { return &StatusError{Op: OpPut, Status: code} }
	transport := func(err error) error { return &TransportError{Op: OpPut, Err: err} }
	tests := []struct {
		name     string
		rule     retryRule
		err      error
		attempt  int
		again    bool
		minWait  time.Duration
		deadline time.Duration // 0: no deadline
	}{
		{name: "safe 503", rule: retryAlways, err: status(503), attempt: 1, again: true},
		{name: "safe 500", rule: retryAlways, err: status(500), attempt: 2, again: true},
		{name: "safe 502", rule: retryAlways, err: status(502), attempt: 1, again: true},
		{name: "safe 504", rule: retryAlways, err: status(504), attempt: 1, again: true},
		{name: "safe 429", rule: retryAlways, err: status(429), attempt: 3, again: true},
		{name: "safe 503 attempts spent", rule: retryAlways, err: status(503), attempt: 4},
		{name: "safe 503 past the attempts", rule: retryAlways, err: status(503), attempt: 5},
		{name: "safe 400", rule: retryAlways, err: status(400), attempt: 1},
		{name: "safe 404", rule: retryAlways, err: status(404), attempt: 1},
		{name: "safe 412", rule: retryAlways, err: status(412), attempt: 1},
		{name: "safe 501", rule: retryAlways, err: status(501), attempt: 1},
		{name: "safe 307", rule: retryAlways, err: status(307), attempt: 1},
		{name: "safe 429 not sent", rule: retryAlways, err: &StatusError{Status: 429, NotSent: true, RetryAfter: time.Millisecond}, attempt: 1},
		{name: "safe 429 Retry-After within MaxDelay", rule: retryAlways, err: &StatusError{Status: 429, RetryAfter: 40 * time.Millisecond}, attempt: 1, again: true, minWait: 40 * time.Millisecond},
		{name: "safe 503 Retry-After at MaxDelay", rule: retryAlways, err: &StatusError{Status: 503, RetryAfter: 50 * time.Millisecond}, attempt: 1, again: true, minWait: 50 * time.Millisecond},
		{name: "safe 429 Retry-After beyond MaxDelay", rule: retryAlways, err: &StatusError{Status: 429, RetryAfter: 51 * time.Millisecond}, attempt: 1},
		{name: "safe transport EOF", rule: retryAlways, err: transport(io.EOF), attempt: 1, again: true},
		{name: "safe transport dial", rule: retryAlways, err: transport(dialErr()), attempt: 3, again: true},
		{name: "safe transport attempts spent", rule: retryAlways, err: transport(io.EOF), attempt: 4},
		{name: "safe response error", rule: retryAlways, err: &ResponseError{Op: OpGet, Reason: "x"}, attempt: 1},
		{name: "safe plain error", rule: retryAlways, err: errors.New("building request"), attempt: 1},
		{name: "safe context canceled", rule: retryAlways, err: context.Canceled, attempt: 1},
		{name: "unsent 429", rule: retryIfNotApplied, err: status(429), attempt: 1, again: true},
		{name: "unsent 429 attempts spent", rule: retryIfNotApplied, err: status(429), attempt: 4},
		{name: "unsent 500", rule: retryIfNotApplied, err: status(500), attempt: 1},
		{name: "unsent 502", rule: retryIfNotApplied, err: status(502), attempt: 1},
		{name: "unsent 503", rule: retryIfNotApplied, err: status(503), attempt: 1},
		{name: "unsent 504", rule: retryIfNotApplied, err: status(504), attempt: 1},
		{name: "unsent 412", rule: retryIfNotApplied, err: status(412), attempt: 1},
		{name: "unsent transport EOF", rule: retryIfNotApplied, err: transport(io.EOF), attempt: 1},
		{name: "unsent transport reset", rule: retryIfNotApplied, err: transport(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), attempt: 1},
		{name: "unsent transport write", rule: retryIfNotApplied, err: transport(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}), attempt: 1},
		{name: "unsent transport dial", rule: retryIfNotApplied, err: transport(dialErr()), attempt: 1, again: true},
		{name: "unsent transport dns", rule: retryIfNotApplied, err: transport(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "api.fastly.com"}}), attempt: 2, again: true},
		{name: "unsent transport bare dns", rule: retryIfNotApplied, err: transport(&net.DNSError{Err: "no such host", Name: "api.fastly.com"}), attempt: 1, again: true},
		{name: "unsent transport dial attempts spent", rule: retryIfNotApplied, err: transport(dialErr()), attempt: 4},
		{name: "deadline before the wait ends", rule: retryAlways, err: status(503), attempt: 1, deadline: time.Millisecond / 4},
		{name: "deadline before Retry-After", rule: retryAlways, err: &StatusError{Status: 503, RetryAfter: 40 * time.Millisecond}, attempt: 1, deadline: 20 * time.Millisecond},
		{name: "deadline after the wait", rule: retryAlways, err: status(503), attempt: 1, again: true, deadline: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			wait, again := p.decide(ctx, tt.rule, tt.err, tt.attempt)
			if again != tt.again {
				t.Fatalf("decide(%v, attempt %d) again = %v, want %v", tt.err, tt.attempt, again, tt.again)
			}
			if !again {
				return
			}
			lo := max(wantBackoffCap(p, tt.attempt)/2, tt.minWait)
			if wait < lo || wait > max(wantBackoffCap(p, tt.attempt), tt.minWait) {
				t.Errorf("wait = %v, want within [%v, %v]", wait, lo, max(wantBackoffCap(p, tt.attempt), tt.minWait))
			}
		})
	}
}

func TestUnknownIfUnsafe(t *testing.T) {
	t.Parallel()
	status := func(code int) error { return &StatusError{Op: OpPut, Status: code, Attempts: 1} }
	transport := func(err error) error { return &TransportError{Op: OpPut, Err: err} }
	tests := []struct {
		name    string
		rule    retryRule
		err     error
		unknown bool
	}{
		{"safe 503", retryAlways, status(503), false},
		{"safe EOF", retryAlways, transport(io.EOF), false},
		{"unsent 500", retryIfNotApplied, status(500), true},
		{"unsent 502", retryIfNotApplied, status(502), true},
		{"unsent 503", retryIfNotApplied, status(503), true},
		{"unsent 504", retryIfNotApplied, status(504), true},
		{"unsent 429", retryIfNotApplied, status(429), false},
		{"unsent 429 not sent", retryIfNotApplied, &StatusError{Status: 429, NotSent: true}, false},
		{"unsent 412", retryIfNotApplied, status(412), false},
		{"unsent 404", retryIfNotApplied, status(404), false},
		{"unsent EOF", retryIfNotApplied, transport(io.EOF), true},
		{"unsent reset", retryIfNotApplied, transport(&net.OpError{Op: "read", Err: syscall.ECONNRESET}), true},
		{"unsent dial", retryIfNotApplied, transport(dialErr()), false},
		{"unsent dns", retryIfNotApplied, transport(&net.DNSError{Err: "no such host"}), false},
		{"unsent response error", retryIfNotApplied, &ResponseError{Op: OpPut, Reason: "x"}, false},
		{"unsent canceled", retryIfNotApplied, context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := unknownIfUnsafe(OpPut, tt.rule, tt.err)
			ue, isUnknown := got.(*UnknownOutcomeError)
			if isUnknown != tt.unknown {
				t.Fatalf("unknownIfUnsafe(%v) = %v (%T), want unknown = %v", tt.err, got, got, tt.unknown)
			}
			if !isUnknown {
				if got != tt.err {
					t.Errorf("unknownIfUnsafe changed %v into %v", tt.err, got)
				}
				return
			}
			if ue.Op != OpPut || ue.Err != tt.err || !errors.Is(got, tt.err) {
				t.Errorf("UnknownOutcomeError = {Op:%q Err:%v}, want {%q %v}", ue.Op, ue.Err, OpPut, tt.err)
			}
			if want := "fastly put item: outcome unknown: " + tt.err.Error(); ue.Error() != want {
				t.Errorf("Error() = %q, want %q", ue.Error(), want)
			}
		})
	}
}
