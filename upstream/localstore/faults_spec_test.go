package localstore_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestParseFaults checks the flag syntax: every key, the round trip
// through Faults.String, and the errors, which name the key at fault.
func TestParseFaults(t *testing.T) {
	t.Parallel()
	good := []struct {
		spec string
		want localstore.Faults
		// canon is what String writes; the spec itself when empty.
		canon string
	}{
		{"", localstore.Faults{}, ""},
		{"  ", localstore.Faults{}, ""},
		{"latency=20ms", localstore.Faults{Latency: 20 * time.Millisecond}, ""},
		{"latency=20ms,jitter=5ms,429=0.05,500=0.02,503=0.03,drop=0.01,drop-before=0.01,drop-mid-body=0.01,slow-body=1ms,retry-after=1s,seed=42",
			localstore.Faults{
				Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond,
				RateLimited: 0.05, ServerError: 0.02, Unavailable: 0.03,
				DropBeforeResponse: 0.01, DropBeforeHandling: 0.01, DropMidBody: 0.01,
				SlowBody: time.Millisecond, RetryAfter: time.Second, Seed: 42,
			},
			"latency=20ms,jitter=5ms,drop-before=0.01,429=0.05,503=0.03,500=0.02,drop=0.01,drop-mid-body=0.01,retry-after=1s,slow-body=1ms,seed=42"},
		{" 429 = 1 , kinds = batch+list ", localstore.Faults{RateLimited: 1, Kinds: localstore.KindsOf(localstore.RequestBatch, localstore.RequestList)},
			"429=1,kinds=list+batch"},
		{"kinds=other+list+get+head+put+delete+batch,500=0.5",
			localstore.Faults{ServerError: 0.5, Kinds: localstore.KindsOf(
				localstore.RequestOther, localstore.RequestList, localstore.RequestGet, localstore.RequestHead,
				localstore.RequestPut, localstore.RequestDelete, localstore.RequestBatch)},
			"500=0.5,kinds=other+list+get+head+put+delete+batch"},
		{"latency=0,500=0", localstore.Faults{}, ""},
		{"latency=1h2m3.5s", localstore.Faults{Latency: time.Hour + 2*time.Minute + 3500*time.Millisecond}, "latency=1h2m3.5s"},
		{"429=0.1,500=0.2,503=0.7", localstore.Faults{RateLimited: 0.1, ServerError: 0.2, Unavailable: 0.7}, "429=0.1,503=0.7,500=0.2"},
		{"seed=18446744073709551615", localstore.Faults{Seed: 1<<64 - 1}, ""},
		{"drop=1", localstore.Faults{DropBeforeResponse: 1}, ""},
	}
	for _, tt := range good {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			got, err := localstore.ParseFaults(tt.spec)
			if err != nil {
				t.Fatalf("ParseFaults: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseFaults = %+v, want %+v", got, tt.want)
			}
			canon := tt.canon
			if canon == "" && tt.want != (localstore.Faults{}) {
				canon = tt.spec
			}
			if s := got.String(); s != canon {
				t.Errorf("String() = %q, want %q", s, canon)
			}
			back, err := localstore.ParseFaults(got.String())
			if err != nil || back != got {
				t.Errorf("ParseFaults(String()) = %+v, %v; want %+v", back, err, got)
			}
		})
	}

	bad := []struct{ spec, key string }{
		{"latency", "latency"},
		{"latency=fast", "latency"},
		{"latency=-1ms", "latency"},
		{"jitter=5", "jitter"},
		{"429=1.5", "429"},
		{"429=-0.1", "429"},
		{"500=NaN", "500"},
		{"503=half", "503"},
		{"drop=2", "drop"},
		{"drop-before=x", "drop-before"},
		{"drop-mid-body=1e3", "drop-mid-body"},
		{"slow-body=1", "slow-body"},
		{"retry-after=-1s", "retry-after"},
		{"seed=-1", "seed"},
		{"seed=0x10", "seed"},
		{"kinds=batch+puts", "kinds"},
		{"kinds=", "kinds"},
		{"latecy=20ms", "latecy"},
		{"404=0.1", "404"},
		{"latency=1ms,latency=2ms", "latency"},
		{"latency=1ms,,500=0.1", ""},
		{"429=0.6,500=0.6", ""},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.spec, func(t *testing.T) {
			t.Parallel()
			f, err := localstore.ParseFaults(tt.spec)
			if err == nil {
				t.Fatalf("ParseFaults(%q) = %+v, want an error", tt.spec, f)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %q", err, tt.key)
			}
		})
	}

	// String writes only what has an effect, clamped.
	odd := localstore.Faults{Latency: -time.Second, ServerError: 3, RateLimited: -1, Unavailable: math.NaN()}
	if s := odd.String(); s != "500=1" {
		t.Errorf("String() = %q, want 500=1", s)
	}
}

// TestKindSet checks the set operations behind Faults.Kinds.
func TestKindSet(t *testing.T) {
	t.Parallel()
	ks := localstore.KindsOf(localstore.RequestBatch, localstore.RequestGet, localstore.RequestGet, localstore.RequestKind(99))
	for k := localstore.RequestKind(-1); k <= localstore.RequestBatch+1; k++ {
		want := k == localstore.RequestBatch || k == localstore.RequestGet
		if ks.Has(k) != want {
			t.Errorf("Has(%v) = %v, want %v", k, ks.Has(k), want)
		}
	}
	if s := ks.String(); s != "get+batch" {
		t.Errorf("String() = %q, want get+batch", s)
	}
	if s := localstore.KindSet(0).String(); s != "" {
		t.Errorf("empty String() = %q", s)
	}
}

// TestFaultSpecKeys checks the spec keys, their order, and that each one
// sets its own field and reads back through Faults.String.
func TestFaultSpecKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pair string
		want localstore.Faults
	}{
		{"latency=20ms", localstore.Faults{Latency: 20 * time.Millisecond}},
		{"jitter=5ms", localstore.Faults{Jitter: 5 * time.Millisecond}},
		{"drop-before=0.25", localstore.Faults{DropBeforeHandling: 0.25}},
		{"429=0.5", localstore.Faults{RateLimited: 0.5}},
		{"503=0.125", localstore.Faults{Unavailable: 0.125}},
		{"500=1", localstore.Faults{ServerError: 1}},
		{"drop=0.01", localstore.Faults{DropBeforeResponse: 0.01}},
		{"drop-mid-body=0.75", localstore.Faults{DropMidBody: 0.75}},
		{"retry-after=2s", localstore.Faults{RetryAfter: 2 * time.Second}},
		{"slow-body=1ms", localstore.Faults{SlowBody: time.Millisecond}},
		{"kinds=get+batch", localstore.Faults{Kinds: localstore.KindsOf(localstore.RequestGet, localstore.RequestBatch)}},
		{"seed=42", localstore.Faults{Seed: 42}},
	}
	var keys []string
	for _, tt := range tests {
		key, _, _ := strings.Cut(tt.pair, "=")
		keys = append(keys, key)
		got, err := localstore.ParseFaults(tt.pair)
		if err != nil || got != tt.want {
			t.Errorf("ParseFaults(%q) = %+v, %v; want %+v", tt.pair, got, err, tt.want)
		}
		if s := tt.want.String(); s != tt.pair {
			t.Errorf("%+v.String() = %q, want %q", tt.want, s, tt.pair)
		}
	}
	if got := localstore.FaultSpecKeys(); !slices.Equal(got, keys) {
		t.Errorf("FaultSpecKeys() = %q, want %q", got, keys)
	}

	_, err := localstore.ParseFaults("latecy=20ms")
	const wantErr = `fault spec: unknown key "latecy" (want latency, jitter, drop-before, 429, 503, 500, drop, drop-mid-body, retry-after, slow-body, kinds or seed)`
	if err == nil || err.Error() != wantErr {
		t.Errorf("unknown key: %v, want %s", err, wantErr)
	}

	help := strings.Split(localstore.FaultSpecHelp(), "\n")
	if len(help) != len(keys) {
		t.Fatalf("FaultSpecHelp() has %d lines for %d keys:\n%s", len(help), len(keys), localstore.FaultSpecHelp())
	}
	for i, line := range help {
		if !strings.HasPrefix(line, keys[i]+"=") || len(strings.Fields(line)) < 2 {
			t.Errorf("FaultSpecHelp() line %d = %q, want %s=VALUE and a description", i, line, keys[i])
		}
	}
}

// One line per key of a fault spec, for a flag's help.
func ExampleFaultSpecHelp() {
	fmt.Println(localstore.FaultSpecHelp())
	// Output:
	// latency=DUR         delay before each request is handled
	// jitter=DUR          random extra delay, less than this
	// drop-before=RATE    share of requests dropped without being applied
	// 429=RATE            share of requests answered 429
	// 503=RATE            share of requests answered 503
	// 500=RATE            share of requests answered 500
	// drop=RATE           share of requests applied, then dropped without an answer
	// drop-mid-body=RATE  share of requests applied, then dropped halfway through the response body
	// retry-after=DUR     wait the 429 and 503 answers ask for (a 429 asks for 1s when unset)
	// slow-body=DUR       delay before each 1024-byte piece of a response body
	// kinds=KIND+KIND     inject faults only into requests of these kinds: other, list, get, head, put, delete, batch, store
	// seed=N              seed of the random draws, an unsigned 64-bit decimal; random when unset
}
