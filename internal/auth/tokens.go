package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// right is one thing a token may do; a token's rights are a set of them.
type right uint8

const (
	rightRead right = 1 << iota
	rightWrite
	rightDelete
)

var rightsByName = map[string]right{"read": rightRead, "write": rightWrite, "delete": rightDelete}

// String is the right's name in the token file; a set of rights is
// their names joined by " and ".
func (r right) String() string {
	var names []string
	for _, name := range []string{"read", "write", "delete"} {
		if r&rightsByName[name] != 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 || r&^(rightRead|rightWrite|rightDelete) != 0 {
		return "unknown"
	}
	return strings.Join(names, " and ")
}

// procedureRights is the right each KV procedure needs. A procedure that
// is missing is refused to every token: a new RPC is closed until it is
// listed here.
var procedureRights = map[string]right{
	kvv1connect.KVStoreServiceGetItemProcedure:       rightRead,
	kvv1connect.KVStoreServiceListKeysProcedure:      rightRead,
	kvv1connect.KVStoreServiceStreamKeysProcedure:    rightRead,
	kvv1connect.KVStoreServicePutItemProcedure:       rightWrite,
	kvv1connect.KVStoreServicePutItemsProcedure:      rightWrite,
	kvv1connect.KVStoreServiceBatchPutItemsProcedure: rightWrite,
	kvv1connect.KVStoreServiceDeleteItemProcedure:    rightDelete,
	// CopyItems reads its source and writes its target: both rights, and
	// both stores within the token's (see scopedStream).
	kvv1connect.KVStoreServiceCopyItemsProcedure: rightRead | rightWrite,
}

// tokenEntry is one token of the token file.
type tokenEntry struct {
	name   string
	hash   [sha256.Size]byte
	stores []storePattern
	rights right
	// rate and burst bound the token's requests; rate 0 is unbounded.
	rate  rate.Limit
	burst int
	// limiter spends the token's rate; nil when unbounded.
	limiter *rate.Limiter
}

// mayUse reports whether the token's stores include store.
func (e *tokenEntry) mayUse(store string) bool {
	for _, p := range e.stores {
		if p.matches(store) {
			return true
		}
	}
	return false
}

// may reports whether the token has right r.
func (e *tokenEntry) may(r right) bool { return e.rights&r == r }

// wait is how long the caller has to wait before the token's rate allows
// another request, zero when it may go ahead now (and spends it).
func (e *tokenEntry) wait(now time.Time) time.Duration {
	if e.limiter == nil {
		return 0
	}
	res := e.limiter.ReserveN(now, 1)
	if !res.OK() {
		return time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// tokenSet is one version of the token file. It never changes once
// built; a reload builds a new one.
type tokenSet struct {
	entries []*tokenEntry
}

// lookup finds the entry whose hash is token's SHA-256, or nil. It
// compares against every entry in constant time, so that neither the time
// taken nor the position of a match says anything about the token.
func (s *tokenSet) lookup(token string) *tokenEntry {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i, e := range s.entries {
		found = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], e.hash[:]), i, found)
	}
	if found < 0 {
		return nil
	}
	return s.entries[found]
}

// startLimiters gives every rate-bounded entry a limiter, taking over the
// one of the same token in prev when its name, hash and rate are unchanged,
// so that a reload does not hand every caller a fresh burst.
func (s *tokenSet) startLimiters(prev *tokenSet) {
	old := map[string]*tokenEntry{}
	if prev != nil {
		for _, e := range prev.entries {
			old[e.name] = e
		}
	}
	for _, e := range s.entries {
		if e.rate == 0 {
			continue
		}
		if o := old[e.name]; o != nil && o.limiter != nil && o.hash == e.hash && o.rate == e.rate && o.burst == e.burst {
			e.limiter = o.limiter
			continue
		}
		e.limiter = rate.NewLimiter(e.rate, e.burst)
	}
}
