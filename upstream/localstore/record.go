package localstore

import (
	"encoding/binary"
	"errors"
	"time"
)

// record is one stored item.
type record struct {
	Generation uint64
	// Modified is when the item was last written.
	Modified time.Time
	// Expires is when the item's time to live ends; zero when it has none.
	Expires  time.Time
	Metadata string
	Value    []byte
}

func (r *record) expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// recordHeaderLen is the fixed part of an encoded record: generation,
// modified and expiry times (Unix nanoseconds), metadata length.
const recordHeaderLen = 8 + 8 + 8 + 4

// encode lays a record out as its fixed header, the metadata, then the value.
func (r *record) encode() []byte {
	buf := make([]byte, recordHeaderLen+len(r.Metadata)+len(r.Value))
	binary.BigEndian.PutUint64(buf[0:], r.Generation)
	binary.BigEndian.PutUint64(buf[8:], uint64(r.Modified.UnixNano()))
	var exp int64
	if !r.Expires.IsZero() {
		exp = r.Expires.UnixNano()
	}
	binary.BigEndian.PutUint64(buf[16:], uint64(exp))
	binary.BigEndian.PutUint32(buf[24:], uint32(len(r.Metadata)))
	n := copy(buf[recordHeaderLen:], r.Metadata)
	copy(buf[recordHeaderLen+n:], r.Value)
	return buf
}

var errCorrupt = errors.New("localstore: corrupt record")

// decodeRecord parses an encoded record. The value is copied when
// copyValue is set; otherwise it aliases buf.
func decodeRecord(buf []byte, copyValue bool) (*record, error) {
	if len(buf) < recordHeaderLen {
		return nil, errCorrupt
	}
	metaLen := int(binary.BigEndian.Uint32(buf[24:]))
	if len(buf) < recordHeaderLen+metaLen {
		return nil, errCorrupt
	}
	r := &record{
		Generation: binary.BigEndian.Uint64(buf[0:]),
		Modified:   time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:]))),
		Metadata:   string(buf[recordHeaderLen : recordHeaderLen+metaLen]),
		Value:      buf[recordHeaderLen+metaLen:],
	}
	if exp := int64(binary.BigEndian.Uint64(buf[16:])); exp != 0 {
		r.Expires = time.Unix(0, exp)
	}
	if copyValue {
		r.Value = append([]byte(nil), r.Value...)
	}
	return r, nil
}

// expiresAt reads only the expiry of an encoded record, for listings.
func expiresAt(buf []byte) time.Time {
	if len(buf) < recordHeaderLen {
		return time.Time{}
	}
	if exp := int64(binary.BigEndian.Uint64(buf[16:])); exp != 0 {
		return time.Unix(0, exp)
	}
	return time.Time{}
}
