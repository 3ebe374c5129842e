package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"connectrpc.com/connect/v2/connectproto"
	"github.com/kvgate/kvgate/internal/valuepool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// binaryCodec and jsonCodec decode as connectproto's codecs do and, when a
// request fails to decode because a string field is not UTF-8, name that
// field (see utf8_errors.go).

// binaryCodec is connectproto's binary codec with field-naming decode
// errors.
type binaryCodec struct{ *connectproto.BinaryCodec }

func (c binaryCodec) UnmarshalRead(ctx context.Context, src io.Reader, msg any) error {
	if valuepool.Leased(ctx) {
		return unmarshalRead(src, msg, func(data []byte, m proto.Message) error {
			return decodeLentValue(ctx, data, m, c.UnmarshalOptions.Unmarshal)
		}, invalidUTF8Field)
	}
	return unmarshalRead(src, msg, c.UnmarshalOptions.Unmarshal, invalidUTF8Field)
}

// jsonCodec is connectproto's JSON codec with field-naming decode errors.
type jsonCodec struct{ *connectproto.JSONCodec }

func (c jsonCodec) UnmarshalRead(_ context.Context, src io.Reader, msg any) error {
	return unmarshalRead(src, msg, c.decode, invalidUTF8JSONField)
}

func (c jsonCodec) decode(data []byte, m proto.Message) error {
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	return c.UnmarshalOptions.Unmarshal(data, m)
}

// locator returns the path of a string field of a message of type md,
// encoded in data, that is not UTF-8 ("key", "items[2].key"), or "".
// Paths are written under prefix.
type locator func(data []byte, md protoreflect.MessageDescriptor, prefix string) string

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// unmarshalRead buffers one message from src and decodes it into msg.
// Only a failed decode is searched, with locate, for a string field that
// is not UTF-8; when there is one, the error names it.
func unmarshalRead(src io.Reader, msg any, decode func([]byte, proto.Message) error, locate locator) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%w: got %T", connectproto.ErrNotProtoMessage, msg)
	}
	var data []byte
	if whole, ok := src.(*bytes.Buffer); ok {
		// connect-go hands over the whole message already buffered:
		// decoding it in place saves holding a second copy.
		data = whole.Bytes()
	} else {
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
		data = buf.Bytes()
	}
	err := decode(data, m)
	if err == nil {
		return nil
	}
	if field := locate(data, m.ProtoReflect().Descriptor(), ""); field != "" {
		return &invalidUTF8Error{field: field}
	}
	return err
}
