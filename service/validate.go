package service

import (
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/badrequest"
	"github.com/kvgate/kvgate/upstream"
)

// maxStoreIDBytes bounds store ids. Fastly's are 22 lowercase letters and
// digits; the bound only keeps nonsense out of URLs and logs.
const maxStoreIDBytes = 128

// violations collects what is wrong with a request, field by field, and
// knows the service's own field rules.
type violations struct{ badrequest.Violations }

func (v *violations) checkStoreID(id string) {
	switch {
	case id == "":
		v.Add("store_id", "store_id must not be empty")
	case len(id) > maxStoreIDBytes:
		v.Add("store_id", "store_id is %d bytes; the limit is %d", len(id), maxStoreIDBytes)
	case strings.IndexFunc(id, func(r rune) bool { return !isStoreIDRune(r) }) >= 0:
		v.Add("store_id", "store_id may hold only ASCII letters, digits, '-' and '_'")
	}
}

// maxKeyViolations bounds the bad keys of a list one request names one by
// one; the rest are counted, so a request of a thousand bad keys still
// gets a readable error.
const maxKeyViolations = 20

// keyViolations names the bad entries of one list field, the first
// maxKeyViolations of them, and counts the rest.
type keyViolations struct {
	v     *violations
	field string
	bad   int
}

// add names entry (such as keys[3]) with the error err, or counts it past
// the bound.
func (k *keyViolations) add(entry string, err error) {
	if k.bad++; k.bad <= maxKeyViolations {
		k.v.Check(entry, err)
	}
}

// done adds the count of the entries not named.
func (k *keyViolations) done() {
	if k.bad > maxKeyViolations {
		k.v.Add(k.field, "%s holds %d more invalid or repeated keys", k.field, k.bad-maxKeyViolations)
	}
}

// checkKeyList checks each key of the list field within Fastly's key rules,
// naming the bad ones field[i]; with unique, a key listed twice is refused
// too (at its second position).
func (v *violations) checkKeyList(field string, keys []string, unique bool) {
	bad := keyViolations{v: v, field: field}
	var seen map[string]int
	if unique {
		seen = make(map[string]int, len(keys))
	}
	for i, key := range keys {
		entry := field + "[" + strconv.Itoa(i) + "]"
		if err := upstream.CheckKey(key); err != nil {
			bad.add(entry, err)
			continue
		}
		if !unique {
			continue
		}
		if first, dup := seen[key]; dup {
			bad.add(entry, fmt.Errorf("repeats %s[%d]", field, first))
			continue
		}
		seen[key] = i
	}
	bad.done()
}

func isStoreIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// checkEnum rejects enum numbers the schema does not define: proto3 enums
// are open, so they arrive intact in binary requests.
func (v *violations) checkEnum(field string, value protoreflect.Enum) {
	if value.Descriptor().Values().ByNumber(value.Number()) == nil {
		v.Add(field, "%s has unknown value %d", field, value.Number())
	}
}

// checkTTL accepts unset, or whole seconds greater than zero.
func (v *violations) checkTTL(field string, d *durationpb.Duration) {
	switch {
	case d == nil:
	case d.CheckValid() != nil:
		v.Add(field, "%s is not a valid duration", field)
	case d.GetNanos() != 0:
		v.Add(field, "%s must be whole seconds", field)
	case d.GetSeconds() <= 0:
		v.Add(field, "%s must be greater than zero", field)
	}
}

// checkPageSize accepts 0 (Fastly's page of 1000) up to 1000.
func (v *violations) checkPageSize(field string, n uint32) {
	if n > MaxListLimit {
		v.Add(field, "%s is %d; the most is %d", field, n, MaxListLimit)
	}
}

func (v *violations) checkValue(value []byte, limit int64) {
	if int64(len(value)) > limit {
		v.Add("value", "value is %d bytes; the limit is %d", len(value), limit)
	}
}

// checkItemTarget checks the store and key of a call on one item.
func checkItemTarget(store, key string) *connect.Error {
	var v violations
	v.checkStoreID(store)
	v.Check("key", upstream.CheckKey(key))
	return v.Err()
}

// itemWrite is one item to write: a PutItem request or a batch item.
type itemWrite interface {
	GetKey() string
	GetValue() []byte
	GetMetadata() string
	GetMode() kvv1.PutMode
	GetTimeToLive() *durationpb.Duration
	GetBackgroundFetch() bool
}

// checkItemWrite checks an item to write; ifGen is its if_generation_match,
// nil when unset.
func (v *violations) checkItemWrite(w itemWrite, ifGen *uint64, maxValue int64) {
	v.Check("key", upstream.CheckKey(w.GetKey()))
	v.Check("metadata", upstream.CheckMetadata(w.GetMetadata()))
	v.checkValue(w.GetValue(), maxValue)
	v.checkEnum("mode", w.GetMode())
	v.checkTTL("time_to_live", w.GetTimeToLive())
	if w.GetMode() == kvv1.PutMode_PUT_MODE_ADD && ifGen != nil {
		v.Add("if_generation_match", "if_generation_match cannot be combined with PUT_MODE_ADD, which already requires the key to be absent")
	}
}

// checkListing checks a listing request and returns the position its
// cursor names; sizeField is the name of its page size field.
func checkListing(store, prefix, cursor string, pageSize uint32, sizeField string, c kvv1.Consistency) (position, *connect.Error) {
	var v violations
	v.checkStoreID(store)
	v.Check("prefix", upstream.CheckKeyPrefix(prefix))
	v.checkPageSize(sizeField, pageSize)
	v.checkEnum("consistency", c)
	pos, err := decodeCursor(store, prefix, cursor)
	v.Check("cursor", err)
	return pos, v.Err()
}
