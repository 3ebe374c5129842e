package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kvgate/kvgate/internal/badrequest"
)

// Protobuf refuses a string field that is not UTF-8 while decoding, before
// any handler runs, and its error does not say which field it was. The
// codecs name the field so the caller learns which one to fix, as for every
// other invalid field.
//
// Whether a failed decode was about UTF-8 is decided from the data, not
// from the decoder's error: the error's wording is not part of protobuf's
// API (neither is the InvalidUTF8 method its binary decoder's error happens
// to have, and protojson's is a plain syntax error). When a decode fails
// and the input holds a string field that is not UTF-8, that field is the
// error; otherwise the decoder's own error stands. Every string in
// kv.proto is proto3, which protobuf validates, so such a field always
// fails the decode by itself.

// invalidUTF8Error names the request field that held invalid UTF-8.
type invalidUTF8Error struct{ field string }

func (e *invalidUTF8Error) Error() string { return e.field + " must be valid UTF-8" }

// invalidUTF8Field walks a binary message of type md and returns the path
// of the first string field that is not UTF-8, or "" when there is none
// before the end of the message or the first bytes that do not parse.
func invalidUTF8Field(data []byte, md protoreflect.MessageDescriptor, prefix string) string {
	counts := map[protowire.Number]int{}
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return ""
		}
		data = data[n:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return ""
			}
			data = data[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return ""
		}
		data = data[n:]
		path := prefix + string(fd.Name())
		if fd.IsList() {
			path = fmt.Sprintf("%s[%d]", path, counts[num])
			counts[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return path
			}
		case protoreflect.MessageKind:
			if f := invalidUTF8Field(v, fd.Message(), path+"."); f != "" {
				return f
			}
		}
	}
	return ""
}

// invalidUTF8JSONField walks a protobuf JSON object of type md and returns
// the path, in proto field names, of a field whose value is a JSON string
// that is not UTF-8, or "" when there is none or data is not JSON. Fields
// are searched in name order.
//
// protojson refuses any JSON string that is not UTF-8, whatever the
// field's type (bytes, enums and durations are strings in JSON too), so a
// field of any type is named. The check is on the raw literal: an escape
// such as a lone surrogate "\ud800" is valid UTF-8 as written, and
// protojson's own error for it (an invalid escape) stands.
func invalidUTF8JSONField(data []byte, md protoreflect.MessageDescriptor, prefix string) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return ""
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		fd := md.Fields().ByJSONName(name)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(name))
		}
		if fd == nil || fd.IsMap() { // kv.proto has no maps
			continue
		}
		path := prefix + string(fd.Name())
		if !fd.IsList() {
			if f := invalidUTF8JSONValue(fields[name], fd, path); f != "" {
				return f
			}
			continue
		}
		var elems []json.RawMessage
		_ = json.Unmarshal(fields[name], &elems) // not a list: nothing to search
		for i, elem := range elems {
			if f := invalidUTF8JSONValue(elem, fd, fmt.Sprintf("%s[%d]", path, i)); f != "" {
				return f
			}
		}
	}
	return ""
}

// invalidUTF8JSONValue searches one value of field fd, at path.
func invalidUTF8JSONValue(raw json.RawMessage, fd protoreflect.FieldDescriptor, path string) string {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		if !utf8.Valid(raw) {
			return path
		}
	case fd.Message() != nil:
		return invalidUTF8JSONField(raw, fd.Message(), path+".")
	}
	return ""
}

// nameInvalidUTF8 turns a request that failed to decode because of invalid
// UTF-8 into INVALID_ARGUMENT with a google.rpc.BadRequest naming the
// field, like every other invalid field.
func nameInvalidUTF8(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		return next(ctx, spec, utf8NamingStream{stream})
	}
}

type utf8NamingStream struct{ connect.ServerStream }

func (s utf8NamingStream) Receive(msg any) error {
	err := s.ServerStream.Receive(msg)
	if bad, ok := errors.AsType[*invalidUTF8Error](err); ok {
		return badrequest.Field(bad.field, bad.Error())
	}
	return err
}
