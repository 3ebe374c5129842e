package localstore

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults is the trouble the store injects into requests, for testing
// clients against a slow or failing upstream; the zero value of each field
// injects nothing. A request suffers at most one failure, each rate being
// the share of requests that suffer it (clamped to [0, 1]; past a sum of 1,
// later fields get what is left). DropBeforeHandling, RateLimited,
// Unavailable and ServerError leave the store unchanged; DropBeforeResponse
// and DropMidBody apply the request first. [Store.InjectedFaults] counts them.
type Faults struct {
	// Latency delays every request before it is handled, on the real clock.
	// A request whose context ends during the delay is answered 503 and not
	// handled.
	Latency time.Duration
	// Jitter adds a random delay in [0, Jitter) to Latency, per request.
	Jitter time.Duration

	// DropBeforeHandling is the rate of requests whose connection is
	// dropped (or HTTP/2 stream reset) with no answer, not applied.
	DropBeforeHandling float64
	// RateLimited is the rate of requests answered 429 with Retry-After,
	// Fastly-RateLimit-Remaining: 0 and Fastly-RateLimit-Reset headers.
	RateLimited float64
	// Unavailable is the rate of requests answered 503, with Retry-After
	// when RetryAfter is positive.
	Unavailable float64
	// ServerError is the rate of requests answered 500.
	ServerError float64
	// DropBeforeResponse is the rate of requests that are applied and then
	// dropped with no answer: an unknown outcome for the client.
	DropBeforeResponse float64
	// DropMidBody is the rate of requests that are applied and whose
	// response is dropped after half its body; a response without a body is
	// sent whole and not counted.
	DropMidBody float64

	// RetryAfter is the wait the 429 and 503 answers ask for, in whole
	// seconds rounded up; a 429 asks for one second when it is not positive.
	RetryAfter time.Duration
	// SlowBody sends the store's own response bodies in pieces of
	// [SlowBodyPiece] bytes, each after this delay.
	SlowBody time.Duration

	// Kinds limits every fault, latency included, to requests of these
	// kinds; other requests pass untouched and take no random draw. The
	// empty set means every request.
	Kinds KindSet
	// Seed seeds the random draws whenever the faults are set, so a seed
	// and an order of requests reproduce the same faults; zero draws a
	// random seed.
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
