package localstore

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// faultSpecKey is one key of a fault spec: the form of its value, what it
// sets, how ParseFaults reads it into a Faults and how Faults.String
// writes it back ("" when the field injects nothing).
type faultSpecKey struct {
	key    string
	value  string
	help   string
	parse  func(f *Faults, value string) error
	format func(f Faults) string
}

// faultSpecKeys are the keys of a fault spec, in the order Faults.String
// writes them.
var faultSpecKeys = []faultSpecKey{
	durationKey("latency", "delay before each request is handled", func(f *Faults) *time.Duration { return &f.Latency }),
	durationKey("jitter", "random extra delay, less than this", func(f *Faults) *time.Duration { return &f.Jitter }),
	rateKey("drop-before", "share of requests dropped without being applied", func(f *Faults) *float64 { return &f.DropBeforeHandling }),
	rateKey("429", "share of requests answered 429", func(f *Faults) *float64 { return &f.RateLimited }),
	rateKey("503", "share of requests answered 503", func(f *Faults) *float64 { return &f.Unavailable }),
	rateKey("500", "share of requests answered 500", func(f *Faults) *float64 { return &f.ServerError }),
	rateKey("drop", "share of requests applied, then dropped without an answer", func(f *Faults) *float64 { return &f.DropBeforeResponse }),
	rateKey("drop-mid-body", "share of requests applied, then dropped halfway through the response body", func(f *Faults) *float64 { return &f.DropMidBody }),
	durationKey("retry-after", "wait the 429 and 503 answers ask for (a 429 asks for 1s when unset)", func(f *Faults) *time.Duration { return &f.RetryAfter }),
	durationKey("slow-body", "delay before each "+strconv.Itoa(SlowBodyPiece)+"-byte piece of a response body", func(f *Faults) *time.Duration { return &f.SlowBody }),
	{
		key:   "kinds",
		value: "KIND+KIND",
		help:  "inject faults only into requests of these kinds: " + strings.Join(requestKindNames[:], ", "),
		parse: func(f *Faults, v string) (err error) {
			f.Kinds, err = parseKinds(v)
			return err
		},
		format: func(f Faults) string { return (f.Kinds & allKinds).String() },
	},
	{
		key:   "seed",
		value: "N",
		help:  "seed of the random draws, an unsigned 64-bit decimal; random when unset",
		parse: func(f *Faults, v string) error {
			seed, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return errors.New("not an unsigned 64-bit decimal")
			}
			f.Seed = seed
			return nil
		},
		format: func(f Faults) string {
			if f.Seed == 0 {
				return ""
			}
			return strconv.FormatUint(f.Seed, 10)
		},
	},
}

// allKinds is the set of every RequestKind.
const allKinds = KindSet(1<<numRequestKinds - 1)

// durationKey is a spec key for a duration field.
func durationKey(key, help string, field func(*Faults) *time.Duration) faultSpecKey {
	return faultSpecKey{
		key: key, value: "DUR", help: help,
		parse: func(f *Faults, v string) (err error) {
			*field(f), err = parseFaultDuration(v)
			return err
		},
		format: func(f Faults) string {
			if d := *field(&f); d > 0 {
				return d.String()
			}
			return ""
		},
	}
}

// rateKey is a spec key for a failure rate.
func rateKey(key, help string, field func(*Faults) *float64) faultSpecKey {
	return faultSpecKey{
		key: key, value: "RATE", help: help,
		parse: func(f *Faults, v string) (err error) {
			*field(f), err = parseRate(v)
			return err
		},
		format: func(f Faults) string {
			if p := rate(*field(&f)); p > 0 {
				return strconv.FormatFloat(p, 'g', -1, 64)
			}
			return ""
		},
	}
}

// FaultSpecKeys returns the keys ParseFaults reads, in the order
// Faults.String writes them.
func FaultSpecKeys() []string {
	keys := make([]string, len(faultSpecKeys))
	for i, k := range faultSpecKeys {
		keys[i] = k.key
	}
	return keys
}

// FaultSpecHelp describes the keys ParseFaults reads, one line each
// ("latency=DUR  delay before ..."), in the order of FaultSpecKeys.
func FaultSpecHelp() string {
	var b strings.Builder
	for i, k := range faultSpecKeys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%-19s %s", k.key+"="+k.value, k.help)
	}
	return b.String()
}

func lookupFaultSpecKey(key string) (faultSpecKey, bool) {
	for _, k := range faultSpecKeys {
		if k.key == key {
			return k, true
		}
	}
	return faultSpecKey{}, false
}

// ParseFaults reads faults from a spec such as
//
//	latency=20ms,jitter=5ms,429=0.05,500=0.02,503=0.03,drop=0.01,seed=42
//
// a comma-separated list of key=value pairs, each key at most once; the
// empty spec is no faults. [FaultSpecHelp] describes the keys. DUR is a
// non-negative [time.ParseDuration] duration, RATE a decimal in [0, 1],
// and the rates add up to at most 1. An error names the key at fault.
// [Faults.String] writes a spec ParseFaults reads back.
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
		k, ok := lookupFaultSpecKey(key)
		if !ok {
			return Faults{}, fmt.Errorf("fault spec: unknown key %q (want %s)", key, orList(FaultSpecKeys()))
		}
		if err := k.parse(&f, value); err != nil {
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

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	last := len(words) - 1
	return strings.Join(words[:last], ", ") + " or " + words[last]
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
			return 0, fmt.Errorf("unknown request kind %q (want %s)", name, allKinds)
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

// String writes f as a spec for ParseFaults, with the keys in the order of
// FaultSpecKeys and only the fields that inject something (and a non-zero
// seed); rates are clamped to [0, 1]. The zero Faults is "".
func (f Faults) String() string {
	var pairs []string
	for _, k := range faultSpecKeys {
		if v := k.format(f); v != "" {
			pairs = append(pairs, k.key+"="+v)
		}
	}
	return strings.Join(pairs, ",")
}
