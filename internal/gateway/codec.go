package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kvgate/kvgate/service"
)

// Protobuf refuses a string field that is not UTF-8 while decoding, before
// any handler runs, and its error does not say which field it was. These
// codecs decode as connectproto's do and, when a request fails for that
// reason, find the field so the caller learns which one to fix; see
// nameInvalidUTF8.

// invalidUTF8Error names the request field that held invalid UTF-8.
type invalidUTF8Error struct{ field string }

func (e *invalidUTF8Error) Error() string { return e.field + " must be valid UTF-8" }

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readAll buffers one message into a pooled buffer and decodes it.
func readAll(src io.Reader, decode func([]byte) error) error {
	buf := buffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 { // keep the pool from pinning value-sized buffers
			buf.Reset()
			buffers.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(src); err != nil {
		return err
	}
	return decode(buf.Bytes())
}

// binaryCodec is connectproto's binary codec with field-naming decode
// errors.
type binaryCodec struct{ *connectproto.BinaryCodec }

func (c binaryCodec) UnmarshalRead(_ context.Context, src io.Reader, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%w: got %T", connectproto.ErrNotProtoMessage, msg)
	}
	return readAll(src, func(data []byte) error {
		err := proto.Unmarshal(data, m)
		if err != nil && strings.Contains(err.Error(), "UTF-8") {
			if field := invalidUTF8Field(data, m.ProtoReflect().Descriptor(), ""); field != "" {
				return &invalidUTF8Error{field: field}
			}
		}
		return err
	})
}

// invalidUTF8Field walks a binary message and returns the path of the first
// string field that is not UTF-8 ("key", "items[2].key"), or "".
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
		name := prefix + string(fd.Name())
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, counts[num])
			counts[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name
			}
		case protoreflect.MessageKind:
			if f := invalidUTF8Field(v, fd.Message(), name+"."); f != "" {
				return f
			}
		}
	}
	return ""
}

// jsonCodec is connectproto's JSON codec with field-naming decode errors.
type jsonCodec struct{ *connectproto.JSONCodec }

func (c jsonCodec) UnmarshalRead(_ context.Context, src io.Reader, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%w: got %T", connectproto.ErrNotProtoMessage, msg)
	}
	return readAll(src, func(data []byte) error {
		if len(data) == 0 {
			return errors.New("zero-length payload is not a valid JSON object")
		}
		err := c.UnmarshalOptions.Unmarshal(data, m)
		if err != nil && strings.Contains(err.Error(), "UTF-8") {
			if field := invalidUTF8JSONField(data, m.ProtoReflect().Descriptor()); field != "" {
				return &invalidUTF8Error{field: field}
			}
		}
		return err
	})
}

// invalidUTF8JSONField returns the path of the first string value that is
// not UTF-8, in proto field names ("key", "items[2].key"), or "".
func invalidUTF8JSONField(data []byte, md protoreflect.MessageDescriptor) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	// frame is an object or array being read; for objects, key is the
	// field whose value comes next.
	type frame struct {
		array bool
		index int
		md    protoreflect.MessageDescriptor // of an object, or of an array's elements
		key   protoreflect.FieldDescriptor
	}
	var stack []*frame
	expectKey := false
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			switch {
			case f.array:
				fmt.Fprintf(&b, "[%d]", f.index)
			case f.key != nil:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(string(f.key.Name()))
			}
		}
		return b.String()
	}
	// child is the message descriptor of the value about to be read.
	child := func() protoreflect.MessageDescriptor {
		if len(stack) == 0 {
			return md
		}
		top := stack[len(stack)-1]
		if top.array {
			return top.md
		}
		if top.key != nil && top.key.Message() != nil {
			return top.key.Message()
		}
		return nil
	}
	afterValue := func() {
		if len(stack) > 0 && !stack[len(stack)-1].array {
			expectKey = true
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		raw := data[start:dec.InputOffset()]
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if name, ok := tok.(string); ok && expectKey && top != nil && !top.array {
			top.key = nil
			if top.md != nil {
				if top.key = top.md.Fields().ByJSONName(name); top.key == nil {
					top.key = top.md.Fields().ByName(protoreflect.Name(name))
				}
			}
			expectKey = false
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			afterValue()
			continue
		}
		// A value begins.
		if top != nil && top.array {
			top.index++
		}
		switch t := tok.(type) {
		case json.Delim:
			stack = append(stack, &frame{array: t == '[', index: -1, md: child()})
			expectKey = t == '{'
			continue
		case string:
			if !utf8.Valid(raw) && top != nil {
				return path()
			}
		}
		afterValue()
	}
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
	var bad *invalidUTF8Error
	if err != nil && errors.As(err, &bad) {
		return service.InvalidField(bad.field, bad.Error())
	}
	return err
}
