package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestStatusErrorKind(t *testing.T) {
	cases := []struct {
		status   int
		pc       Precondition
		want     Kind
		itemWide bool
	}{
		{404, PreconditionNone, KindNotFound, false},
		{412, PreconditionAbsent, KindKeyExists, true},
		{412, PreconditionGeneration, KindGenerationMismatch, true},
		{412, PreconditionNone, KindPreconditionFailed, true},
		{400, PreconditionNone, KindBadRequest, true},
		{400, PreconditionAbsent, KindBadRequest, true},
		{401, PreconditionNone, KindUnauthorized, false},
		{403, PreconditionNone, KindForbidden, false},
		{413, PreconditionNone, KindTooLarge, true},
		{429, PreconditionNone, KindRateLimited, false},
		{500, PreconditionNone, KindUnavailable, false},
		{503, PreconditionGeneration, KindUnavailable, false},
		{599, PreconditionNone, KindUnavailable, false},
		{409, PreconditionNone, KindUnexpectedStatus, false},
		{304, PreconditionNone, KindUnexpectedStatus, false},
		{200, PreconditionNone, KindUnexpectedStatus, false},
	}
	for _, c := range cases {
		se := &StatusError{Op: OpPut, Status: c.status, Precondition: c.pc}
		if got := se.Kind(); got != c.want {
			t.Errorf("status %d precondition %d: Kind = %v; want %v", c.status, c.pc, got, c.want)
		}
		if got := se.Kind().ItemLevel(); got != c.itemWide {
			t.Errorf("status %d precondition %d: ItemLevel = %v; want %v", c.status, c.pc, got, c.itemWide)
		}
	}
}

func TestKindOf(t *testing.T) {
	status := &StatusError{Op: OpPut, Status: 503}
	transport := &TransportError{Op: OpPut, Err: io.ErrUnexpectedEOF}
	cases := []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, KindNone},
		{"plain", errors.New("boom"), KindOther},
		{"context", context.Canceled, KindOther},
		{"status", status, KindUnavailable},
		{"wrapped status", fmt.Errorf("wrapped: %w", &StatusError{Status: 404}), KindNotFound},
		{"transport", transport, KindUnreachable},
		{"response", &ResponseError{Op: OpList, Reason: "not JSON"}, KindBadResponse},
		{"unknown over status", &UnknownOutcomeError{Op: OpPut, Err: status}, KindOutcomeUnknown},
		{"unknown over transport", &UnknownOutcomeError{Op: OpPut, Err: transport}, KindOutcomeUnknown},
	}
	for _, c := range cases {
		if got := KindOf(c.err); got != c.want {
			t.Errorf("%s: KindOf = %v; want %v", c.name, got, c.want)
		}
	}
}

func TestBatchLineErrorKind(t *testing.T) {
	cases := []struct {
		code string
		want Kind
	}{
		{"400", KindBadRequest},
		{"", KindBadRequest},
		{"invalid", KindBadRequest},
		{"412", KindPreconditionFailed},
		{"413", KindTooLarge},
		{"429", KindRateLimited},
		{"500", KindUnavailable},
		{"404", KindNotFound},
		{"418", KindUnexpectedStatus},
	}
	for _, c := range cases {
		if got := (BatchLineError{Code: c.code}).Kind(); got != c.want {
			t.Errorf("code %q: Kind = %v; want %v", c.code, got, c.want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k := KindNone; k <= KindOutcomeUnknown; k++ {
		if s := k.String(); s == "" || s == fmt.Sprintf("kind %d", int(k)) {
			t.Errorf("Kind(%d) has no name: %q", int(k), s)
		}
	}
	if got := Kind(99).String(); got != "kind 99" {
		t.Errorf("Kind(99).String() = %q", got)
	}
}
