package localstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
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

// faultKinds routes a request the way Handler does, to find its kind for
// Faults.Kinds. Handler counts requests by kind before withFaults runs but
// does not pass the kind on, so the patterns are repeated here; the
// Kinds tests check both agree on every kind of request.
var faultKinds = sync.OnceValue(func() *http.ServeMux {
	mux := http.NewServeMux()
	for _, r := range []struct {
		pattern string
		kind    RequestKind
	}{
		{"GET /resources/stores/kv/{store}/keys", RequestList},
		{"GET /resources/stores/kv/{store}/keys/{key...}", RequestGet},
		{"HEAD /resources/stores/kv/{store}/keys/{key...}", RequestHead},
		{"PUT /resources/stores/kv/{store}/keys/{key...}", RequestPut},
		{"DELETE /resources/stores/kv/{store}/keys/{key...}", RequestDelete},
		{"PUT /resources/stores/kv/{store}/batch", RequestBatch},
	} {
		mux.Handle(r.pattern, &route{kind: r.kind})
	}
	return mux
})

// withFaults applies the current faults to each request around next.
func (s *Store) withFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := s.faults.Load()
		if !f.active() || (f.Kinds != 0 && !f.Kinds.Has(kindOf(faultKinds(), r))) {
			next.ServeHTTP(w, r)
			return
		}
		ff, delay, o := s.draw()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				// The client is gone, or the server is shutting down; the
				// answer is for the latter.
				writeError(w, http.StatusServiceUnavailable, "Request cancelled", "the request ended during the injected latency")
				return
			}
		}
		s.serveFault(&ff, o, next, w, r)
	})
}

// serveFault injects failure o into a request, or none, and handles it.
func (s *Store) serveFault(f *Faults, o outcome, next http.Handler, w http.ResponseWriter, r *http.Request) {
	counts := &s.faultState.counts
	switch o {
	case outcomeDropBeforeHandling:
		counts[o].Add(1)
		dropConn(w, r)
		return
	case outcomeRateLimited:
		counts[o].Add(1)
		wait := f.RetryAfter
		if wait <= 0 {
			wait = time.Second
		}
		h := w.Header()
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(wait), 10))
		h.Set("Fastly-RateLimit-Remaining", "0")
		h.Set("Fastly-RateLimit-Reset", strconv.FormatInt(resetEpoch(time.Now(), wait), 10))
		writeError(w, http.StatusTooManyRequests, "Too many requests", "injected fault: rate limited")
		return
	case outcomeUnavailable:
		counts[o].Add(1)
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(f.RetryAfter), 10))
		}
		writeError(w, http.StatusServiceUnavailable, "Service unavailable", "injected fault: unavailable")
		return
	case outcomeServerError:
		counts[o].Add(1)
		writeError(w, http.StatusInternalServerError, "Internal server error", "injected fault: server error")
		return
	case outcomeDropBeforeResponse:
		next.ServeHTTP(&discardWriter{header: http.Header{}}, r)
		counts[o].Add(1)
		dropConn(w, r)
		return
	}
	cut := o == outcomeDropMidBody
	if !cut && f.SlowBody <= 0 {
		next.ServeHTTP(w, r)
		return
	}
	fw := &faultWriter{ResponseWriter: w, ctx: r.Context(), cut: cut, slow: f.SlowBody}
	next.ServeHTTP(fw, r)
	if fw.dropped {
		if fw.wasCut {
			counts[outcomeDropMidBody].Add(1)
		}
		// Whatever was sent must not pass for a whole response.
		panic(http.ErrAbortHandler)
	}
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// resetEpoch is the Unix second at which a wait from now is over, rounded
// up.
func resetEpoch(now time.Time, wait time.Duration) int64 {
	end := now.Add(wait)
	secs := end.Unix()
	if end.After(time.Unix(secs, 0)) {
		secs++
	}
	return secs
}

// dropConn drops a request's connection without sending anything: an
// HTTP/1 connection is hijacked and closed; an HTTP/2 stream, which cannot
// be hijacked, is reset by aborting the handler.
func dropConn(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// discardWriter takes a response and sends nothing.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

var errDropped = errors.New("localstore: injected fault: response dropped")

// faultWriter cuts a response's body after half its first write (cut), or
// sends it slowly (slow), or both.
type faultWriter struct {
	http.ResponseWriter
	ctx  context.Context
	cut  bool
	slow time.Duration
	// started is set once the headers have been flushed.
	started bool
	// wasCut is set once the body has been cut; dropped once the rest of
	// the response must not be sent, because it was cut or the request
	// ended while the body trickled.
	wasCut, dropped bool
}

func (fw *faultWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }

func (fw *faultWriter) Write(p []byte) (int, error) {
	if fw.dropped {
		return 0, errDropped
	}
	if len(p) == 0 {
		return fw.ResponseWriter.Write(p)
	}
	whole := len(p)
	if fw.cut {
		p = p[:len(p)/2]
	}
	n, err := fw.write(p)
	if err != nil {
		fw.dropped = true
		return n, err
	}
	if fw.cut {
		fw.flush()
		fw.wasCut, fw.dropped = true, true
		return n, errDropped
	}
	return whole, nil
}

// write sends p, in pieces after delays when the body is slow.
func (fw *faultWriter) write(p []byte) (int, error) {
	if fw.slow <= 0 {
		return fw.ResponseWriter.Write(p)
	}
	if !fw.started {
		fw.started = true
		fw.flush() // the headers go out at once; only the body is slow
	}
	var written int
	for len(p) > 0 {
		t := time.NewTimer(fw.slow)
		select {
		case <-t.C:
		case <-fw.ctx.Done():
			t.Stop()
			return written, fw.ctx.Err()
		}
		piece := p[:min(len(p), SlowBodyPiece)]
		n, err := fw.ResponseWriter.Write(piece)
		written += n
		if err != nil {
			return written, err
		}
		fw.flush()
		p = p[n:]
	}
	return written, nil
}

func (fw *faultWriter) flush() { _ = http.NewResponseController(fw.ResponseWriter).Flush() }

// Flush sends what was written so far.
func (fw *faultWriter) Flush() {
	if !fw.dropped {
		fw.flush()
	}
}

// The keys of a fault spec, in the order Faults.String writes them.
const (
	keyLatency            = "latency"
	keyJitter             = "jitter"
	keyDropBeforeHandling = "drop-before"
	keyRateLimited        = "429"
	keyUnavailable        = "503"
	keyServerError        = "500"
	keyDropBeforeResponse = "drop"
	keyDropMidBody        = "drop-mid-body"
	keyRetryAfter         = "retry-after"
	keySlowBody           = "slow-body"
	keyKinds              = "kinds"
	keySeed               = "seed"
)

// ParseFaults reads faults from a spec such as
//
//	latency=20ms,jitter=5ms,429=0.05,500=0.02,503=0.03,drop=0.01,seed=42
//
// for a command-line flag. A spec is a comma-separated list of key=value
// pairs, each key at most once, spaces around pairs ignored; the empty
// spec is no faults. The keys:
//
//	latency=DUR        Faults.Latency
//	jitter=DUR         Faults.Jitter
//	drop-before=RATE   Faults.DropBeforeHandling (dropped, not applied)
//	429=RATE           Faults.RateLimited
//	503=RATE           Faults.Unavailable
//	500=RATE           Faults.ServerError
//	drop=RATE          Faults.DropBeforeResponse (applied, then dropped)
//	drop-mid-body=RATE Faults.DropMidBody
//	retry-after=DUR    Faults.RetryAfter
//	slow-body=DUR      Faults.SlowBody
//	kinds=KIND+KIND    Faults.Kinds: other, list, get, head, put, delete, batch
//	seed=N             Faults.Seed, an unsigned 64-bit decimal
//
// DUR is a time.ParseDuration duration, not negative ("0" is allowed);
// RATE is a decimal in [0, 1]. The rates must add up to at most 1. An
// unknown key, a repeated one or a bad value is an error that names the
// key. Faults.String writes a spec ParseFaults reads back.
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(spec) == "" {
		return f, nil
	}
	seen := map[string]bool{}
	for pair := range strings.SplitSeq(spec, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			return Faults{}, fmt.Errorf("fault spec %q: empty entry", spec)
		}
		key, value, ok := strings.Cut(pair, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok {
			return Faults{}, fmt.Errorf("fault spec: %q is not key=value", pair)
		}
		if seen[key] {
			return Faults{}, fmt.Errorf("fault spec: %s given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case keyLatency:
			f.Latency, err = parseFaultDuration(value)
		case keyJitter:
			f.Jitter, err = parseFaultDuration(value)
		case keyDropBeforeHandling:
			f.DropBeforeHandling, err = parseRate(value)
		case keyRateLimited:
			f.RateLimited, err = parseRate(value)
		case keyUnavailable:
			f.Unavailable, err = parseRate(value)
		case keyServerError:
			f.ServerError, err = parseRate(value)
		case keyDropBeforeResponse:
			f.DropBeforeResponse, err = parseRate(value)
		case keyDropMidBody:
			f.DropMidBody, err = parseRate(value)
		case keyRetryAfter:
			f.RetryAfter, err = parseFaultDuration(value)
		case keySlowBody:
			f.SlowBody, err = parseFaultDuration(value)
		case keyKinds:
			f.Kinds, err = parseKinds(value)
		case keySeed:
			f.Seed, err = strconv.ParseUint(value, 10, 64)
			if err != nil {
				err = errors.New("not an unsigned 64-bit decimal")
			}
		default:
			return Faults{}, fmt.Errorf("fault spec: unknown key %q (want latency, jitter, drop-before, 429, 503, 500, drop, drop-mid-body, retry-after, slow-body, kinds or seed)", key)
		}
		if err != nil {
			return Faults{}, fmt.Errorf("fault spec: %s=%q: %w", key, value, err)
		}
	}
	var sum float64
	for _, p := range f.rates() {
		sum += p
	}
	// A little slack, so that 0.1+0.2+0.7 is not refused for rounding.
	if sum > 1+1e-9 {
		return Faults{}, fmt.Errorf("fault spec %q: the rates add up to %g, more than 1", spec, sum)
	}
	return f, nil
}

func parseFaultDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("not a duration such as 20ms")
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}

func parseRate(v string) (float64, error) {
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(p) || p < 0 || p > 1 {
		return 0, errors.New("not a rate between 0 and 1")
	}
	return p, nil
}

func parseKinds(v string) (KindSet, error) {
	var ks KindSet
	for name := range strings.SplitSeq(v, "+") {
		k, ok := kindByName(strings.TrimSpace(name))
		if !ok {
			return 0, fmt.Errorf("unknown request kind %q (want %s)", name, KindSet(1<<numRequestKinds-1))
		}
		ks |= KindsOf(k)
	}
	return ks, nil
}

func kindByName(name string) (RequestKind, bool) {
	for k, n := range requestKindNames {
		if n == name {
			return RequestKind(k), true
		}
	}
	return 0, false
}

// String writes f as a spec for ParseFaults, with the keys in the order
// ParseFaults documents and only the fields that inject something (and a
// non-zero seed); rates are clamped to [0, 1]. The zero Faults is "".
func (f Faults) String() string {
	var b strings.Builder
	add := func(key, value string) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(key + "=" + value)
	}
	dur := func(key string, d time.Duration) {
		if d > 0 {
			add(key, d.String())
		}
	}
	rates := f.rates()
	prob := func(key string, o outcome) {
		if rates[o] > 0 {
			add(key, strconv.FormatFloat(rates[o], 'g', -1, 64))
		}
	}
	dur(keyLatency, f.Latency)
	dur(keyJitter, f.Jitter)
	prob(keyDropBeforeHandling, outcomeDropBeforeHandling)
	prob(keyRateLimited, outcomeRateLimited)
	prob(keyUnavailable, outcomeUnavailable)
	prob(keyServerError, outcomeServerError)
	prob(keyDropBeforeResponse, outcomeDropBeforeResponse)
	prob(keyDropMidBody, outcomeDropMidBody)
	dur(keyRetryAfter, f.RetryAfter)
	dur(keySlowBody, f.SlowBody)
	if ks := f.Kinds & (1<<numRequestKinds - 1); ks != 0 {
		add(keyKinds, ks.String())
	}
	if f.Seed != 0 {
		add(keySeed, strconv.FormatUint(f.Seed, 10))
	}
	return b.String()
}
