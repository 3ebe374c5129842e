package localstore

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults is the trouble the store injects into requests, so clients can be
// tested against a slow or failing upstream. The zero value injects
// nothing, and so does the zero value of each field.
//
// # Failures
//
// Each request suffers at most one of the failures, drawn when it arrives
// from the store's random source (see Seed): one uniform number in [0, 1)
// is compared with the rates, added up in the order below (drop before
// handling, 429, 503, 500, drop before the response, drop mid-body). So
// each rate is the share of requests that suffer that failure, as long as
// the rates add up to at most 1; when they add up to more, the later ones
// get what is left. A rate below 0 (or NaN) counts as 0, one above 1 as 1.
//
// The failures decided before handling (DropBeforeHandling, RateLimited,
// Unavailable, ServerError) leave the store as it was: the request is
// never applied and its body is not read. A request that suffers
// DropBeforeResponse or DropMidBody is applied before its connection is
// dropped. Store.InjectedFaults counts the failures.
//
// A dropped HTTP/1 connection is closed by hijacking it; an HTTP/2 stream
// is reset by panicking with http.ErrAbortHandler, which net/http turns
// into RST_STREAM without logging. A middleware that recovers panics
// around Store.Handler would turn the latter into its own answer.
//
// Go's HTTP/1 Transport itself resends an idempotent request (GET, HEAD,
// or one with an Idempotency-Key) once, on a new connection, when a
// reused connection closes before any response: such a request can meet
// a drop twice and be counted twice.
//
// # Kinds
//
// Kinds limits every fault, latency included, to requests of the given
// kinds; the others pass untouched and take no random draw.
type Faults struct {
	// Latency delays every request by this long before it is handled,
	// measured on the real clock (Options.Now only drives expiry). A
	// request whose context ends during the delay, because its client gave
	// up, is not handled at all. Zero or negative adds no delay.
	//
	// Go's HTTP/1 server notices a client going away only once the request
	// body has been read, so a cancelled request with an unread body (a
	// PUT, a batch) waits out the delay; one without a body (GET, HEAD,
	// DELETE, a listing) stops waiting at once.
	Latency time.Duration
	// Jitter adds a uniformly random delay in [0, Jitter) to Latency, drawn
	// per request. Zero or negative adds none.
	Jitter time.Duration

	// DropBeforeHandling is the rate of requests whose connection is
	// dropped (closed, or the HTTP/2 stream reset) without an answer and
	// without the request being applied.
	DropBeforeHandling float64
	// RateLimited is the rate of requests answered 429 with a JSON body
	// and the headers Retry-After (RetryAfter in whole seconds, rounded
	// up), Fastly-RateLimit-Remaining: 0 and Fastly-RateLimit-Reset (the
	// UTC epoch second RetryAfter from now, rounded up).
	RateLimited float64
	// Unavailable is the rate of requests answered 503 with a JSON body,
	// and Retry-After when RetryAfter is positive.
	Unavailable float64
	// ServerError is the rate of requests answered 500 with a JSON body.
	ServerError float64
	// DropBeforeResponse is the rate of requests that are applied but
	// whose connection is then dropped without any response: the unknown
	// outcome a client must not answer by blindly resending an append or
	// prepend. The handler writes its answer into a buffer that is thrown
	// away.
	DropBeforeResponse float64
	// DropMidBody is the rate of requests whose response, when it has a
	// body (a GET's value, a listing, a batch answer, an error's JSON), is
	// cut: the status, the headers and the first half of the body (rounded
	// down, so possibly nothing of a one-byte body) are sent, then the
	// connection is dropped. The request is applied. A request drawn for
	// it whose response has no body (a PUT, a DELETE, a HEAD, a 412) is
	// answered normally and not counted.
	DropMidBody float64

	// RetryAfter is the wait the 429 and 503 answers ask for. A 429 says
	// one second when it is zero or negative; a 503 then says nothing.
	RetryAfter time.Duration
	// SlowBody makes every response body the store writes (not those of
	// the injected failures) trickle: the headers are sent at once, then
	// the body in pieces of SlowBodyPiece bytes, each after a delay of
	// SlowBody, so a body of n bytes takes ceil(n/SlowBodyPiece) delays. If the request's context ends meanwhile, the rest is not sent
	// and the connection is dropped. Zero or negative sends bodies at once.
	SlowBody time.Duration

	// Kinds limits the faults to requests of these kinds; zero means every
	// request.
	Kinds KindSet
	// Seed seeds the random source that draws failures and jitter. Store
	// reseeds it whenever the faults are set (by Open or SetFaults), so a
	// given seed and a given order of requests reproduce the same faults
	// (concurrent requests draw in the order they arrive). Zero seeds it
	// randomly.
	Seed uint64
}

// SlowBodyPiece is the size of the pieces a body is sent in under
// Faults.SlowBody.
const SlowBodyPiece = 1024

// KindSet is a set of RequestKinds. The zero value is empty.
type KindSet uint32

// KindsOf returns the set of kinds.
func KindsOf(kinds ...RequestKind) KindSet {
	var ks KindSet
	for _, k := range kinds {
		if k >= 0 && k < numRequestKinds {
			ks |= 1 << k
		}
	}
	return ks
}

// Has reports whether k is in the set.
func (ks KindSet) Has(k RequestKind) bool {
	return k >= 0 && k < numRequestKinds && ks&(1<<k) != 0
}

// String lists the kinds' names joined by "+", in RequestKind order, as
// ParseFaults reads them: "get+list". The empty set is "".
func (ks KindSet) String() string {
	var names []string
	for k := range numRequestKinds {
		if ks.Has(k) {
			names = append(names, k.String())
		}
	}
	return strings.Join(names, "+")
}

// FaultCounts counts the failures a store injected.
type FaultCounts struct {
	// RateLimited, Unavailable and ServerError count the 429, 503 and 500
	// answers. None of those requests was applied.
	RateLimited, Unavailable, ServerError int64
	// DroppedBeforeHandling counts dropped requests that were not applied.
	DroppedBeforeHandling int64
	// DroppedBeforeResponse counts dropped requests that were applied.
	DroppedBeforeResponse int64
	// DroppedMidBody counts responses cut after part of their body. The
	// requests were applied.
	DroppedMidBody int64
}

// outcome is the failure drawn for one request.
type outcome int

const (
	outcomeNone outcome = iota
	outcomeDropBeforeHandling
	outcomeRateLimited
	outcomeUnavailable
	outcomeServerError
	outcomeDropBeforeResponse
	outcomeDropMidBody
	numOutcomes
)

// faultState is the store's random source and failure counters.
type faultState struct {
	mu     sync.Mutex
	rng    *rand.PCG
	counts [numOutcomes]atomic.Int64
}

// SetFaults replaces the faults injected into requests that arrive from
// now on; requests already waiting keep theirs. It reseeds the random
// source from f.Seed. It is safe to call while the store serves requests.
func (s *Store) SetFaults(f Faults) {
	seed := f.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	fs := &s.faultState
	fs.mu.Lock()
	defer fs.mu.Unlock()
	s.faults.Store(&f)
	fs.rng = rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
}

// Faults returns the faults currently injected, as they were set.
func (s *Store) Faults() Faults { return *s.faults.Load() }

// InjectedFaults returns how many failures of each kind the store has
// injected since it was opened. A failure is counted before its connection
// is dropped, so a client that has seen it fail sees it counted.
func (s *Store) InjectedFaults() FaultCounts {
	c := &s.faultState.counts
	return FaultCounts{
		RateLimited:           c[outcomeRateLimited].Load(),
		Unavailable:           c[outcomeUnavailable].Load(),
		ServerError:           c[outcomeServerError].Load(),
		DroppedBeforeHandling: c[outcomeDropBeforeHandling].Load(),
		DroppedBeforeResponse: c[outcomeDropBeforeResponse].Load(),
		DroppedMidBody:        c[outcomeDropMidBody].Load(),
	}
}

// rate clamps a failure rate to [0, 1].
func rate(p float64) float64 {
	switch {
	case p > 1:
		return 1
	case p > 0:
		return p
	default: // negative or NaN
		return 0
	}
}

// rates lists the failure rates in the order the outcomes are drawn.
func (f *Faults) rates() [numOutcomes]float64 {
	return [numOutcomes]float64{
		outcomeDropBeforeHandling: rate(f.DropBeforeHandling),
		outcomeRateLimited:        rate(f.RateLimited),
		outcomeUnavailable:        rate(f.Unavailable),
		outcomeServerError:        rate(f.ServerError),
		outcomeDropBeforeResponse: rate(f.DropBeforeResponse),
		outcomeDropMidBody:        rate(f.DropMidBody),
	}
}

// random reports whether f needs random draws.
func (f *Faults) random() bool {
	if f.Jitter > 0 {
		return true
	}
	for _, p := range f.rates() {
		if p > 0 {
			return true
		}
	}
	return false
}

// active reports whether f does anything at all.
func (f *Faults) active() bool {
	return f.Latency > 0 || f.SlowBody > 0 || f.random()
}

// unit turns 64 random bits into a float64 in [0, 1), without depending on
// how math/rand/v2 does it, so that a seed gives the same faults in every
// Go release (PCG's output is fixed by its specification).
func unit(x uint64) float64 { return float64(x>>11) * 0x1p-53 }

// draw picks the delay and the failure of one request. Every request with
// random faults takes exactly two numbers from the source, so the n-th such
// request after SetFaults always gets the same ones.
func (s *Store) draw() (Faults, time.Duration, outcome) {
	fs := &s.faultState
	fs.mu.Lock()
	f := *s.faults.Load() // under the lock: the faults that match the seed
	if !f.random() {
		fs.mu.Unlock()
		return f, max(f.Latency, 0), outcomeNone
	}
	u1, u2 := unit(fs.rng.Uint64()), unit(fs.rng.Uint64())
	fs.mu.Unlock()

	delay := max(f.Latency, 0)
	if f.Jitter > 0 {
		delay += min(time.Duration(u1*float64(f.Jitter)), f.Jitter-1)
	}
	var sum float64
	for o, p := range f.rates() {
		sum += p
		if p > 0 && u2 < sum {
			return f, delay, outcome(o)
		}
	}
	return f, delay, outcomeNone
}
