package localstore

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

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
