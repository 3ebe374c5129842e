package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/kvgate/kvgate/internal/rpcerr"
	"github.com/kvgate/kvgate/upstream"
)

// wantWire is the error a caller must see for one upstream failure.
type wantWire struct {
	code       connect.Code
	msg        string
	reason     string // "" for no ErrorInfo
	httpStatus string // "" for no http_status metadata
	retry      time.Duration
	badField   string
}

func TestFromUpstream(t *testing.T) {
	status := func(code int, pc upstream.Precondition, retry time.Duration) error {
		return &upstream.StatusError{Op: upstream.OpPut, Status: code, Precondition: pc, RetryAfter: retry, Body: "upstream body"}
	}
	none := upstream.PreconditionNone
	transport := &upstream.TransportError{Op: upstream.OpPut, Err: io.ErrUnexpectedEOF}
	cases := []struct {
		name    string
		err     error
		subject notFoundSubject
		want    wantWire
	}{
		{"404 item", status(404, none, 0), itemSubject,
			wantWire{connect.CodeNotFound, "item not found", reasonNotFound, "404", 0, ""}},
		{"404 store", status(404, none, 0), storeSubject,
			wantWire{connect.CodeNotFound, "store not found", reasonNotFound, "404", 0, ""}},
		{"412 add", status(412, upstream.PreconditionAbsent, 0), itemSubject,
			wantWire{connect.CodeAlreadyExists, "an item with this key already exists", reasonKeyExists, "412", 0, ""}},
		{"412 generation", status(412, upstream.PreconditionGeneration, 0), itemSubject,
			wantWire{connect.CodeAborted, "the item's generation does not match if_generation_match; read the item again and retry", reasonGenerationMismatch, "412", 0, ""}},
		{"412 other", status(412, none, 0), itemSubject,
			wantWire{connect.CodeFailedPrecondition, "Fastly refused the request: precondition failed", reasonPrecondition, "412", 0, ""}},
		{"400", status(400, none, 0), itemSubject,
			wantWire{connect.CodeInvalidArgument, "Fastly rejected the request as invalid", reasonBadRequest, "400", 0, ""}},
		{"401", status(401, none, 0), itemSubject,
			wantWire{connect.CodeUnauthenticated, "Fastly did not accept the API token", reasonUnauthenticated, "401", 0, ""}},
		{"403", status(403, none, 0), itemSubject,
			wantWire{connect.CodePermissionDenied, "the API token is not allowed to do this", reasonPermissionDenied, "403", 0, ""}},
		{"413", status(413, none, 0), itemSubject,
			wantWire{connect.CodeInvalidArgument, "the value is larger than Fastly accepts", reasonValueTooLarge, "413", 0, "value"}},
		{"429", status(429, none, 0), itemSubject,
			wantWire{connect.CodeResourceExhausted, "Fastly's rate limit was reached; retry later", reasonRateLimited, "429", 0, ""}},
		{"429 retry after", status(429, none, 7*time.Second), itemSubject,
			wantWire{connect.CodeResourceExhausted, "Fastly's rate limit was reached; retry later", reasonRateLimited, "429", 7 * time.Second, ""}},
		{"503", status(503, none, 0), storeSubject,
			wantWire{connect.CodeUnavailable, "Fastly is unavailable; retry later", reasonUnavailable, "503", 0, ""}},
		{"503 retry after", status(503, none, 3*time.Second), storeSubject,
			wantWire{connect.CodeUnavailable, "Fastly is unavailable; retry later", reasonUnavailable, "503", 3 * time.Second, ""}},
		// A wait on a kind not worth retrying is not passed on.
		{"400 retry after", status(400, none, 3*time.Second), itemSubject,
			wantWire{connect.CodeInvalidArgument, "Fastly rejected the request as invalid", reasonBadRequest, "400", 0, ""}},
		{"418", status(418, none, 0), itemSubject,
			wantWire{connect.CodeUnknown, "Fastly answered with an unexpected status", reasonUnexpectedStatus, "418", 0, ""}},
		{"transport", transport, itemSubject,
			wantWire{connect.CodeUnavailable, "could not reach Fastly", reasonUnreachable, "", 0, ""}},
		{"response", &upstream.ResponseError{Op: upstream.OpList, Reason: "not JSON"}, storeSubject,
			wantWire{connect.CodeUnavailable, "Fastly sent a response kvgate could not read", reasonBadResponse, "", 0, ""}},
		{"unknown over 503", &upstream.UnknownOutcomeError{Op: upstream.OpPut, Err: status(503, none, 3*time.Second)}, itemSubject,
			wantWire{connect.CodeUnknown, "Fastly may or may not have applied the write; read the item before retrying", reasonOutcomeUnknown, "", 0, ""}},
		{"unknown over transport", &upstream.UnknownOutcomeError{Op: upstream.OpPut, Err: transport}, itemSubject,
			wantWire{connect.CodeUnknown, "Fastly may or may not have applied the write; read the item before retrying", reasonOutcomeUnknown, "", 0, ""}},
		{"deadline", &upstream.TransportError{Op: upstream.OpGet, Err: context.DeadlineExceeded}, itemSubject,
			wantWire{connect.CodeDeadlineExceeded, "deadline exceeded before Fastly answered", "", "", 0, ""}},
		{"canceled", fmt.Errorf("get: %w", context.Canceled), itemSubject,
			wantWire{connect.CodeCanceled, "request canceled", "", "", 0, ""}},
		{"other", errors.New("boom"), itemSubject,
			wantWire{connect.CodeInternal, "internal error", "", "", 0, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkWire(t, wording{}.fromUpstream(c.err, c.subject), c.want)
		})
	}
}

// checkWire compares cerr with want, details included: an ErrorInfo first
// when a reason is wanted, then a BadRequest or a RetryInfo, and nothing
// else.
func checkWire(t *testing.T, cerr *connect.Error, want wantWire) {
	t.Helper()
	if cerr.Code() != want.code || cerr.Message() != want.msg {
		t.Errorf("error %v %q; want %v %q", cerr.Code(), cerr.Message(), want.code, want.msg)
	}
	details := cerr.Details()
	next := func() any {
		if len(details) == 0 {
			return nil
		}
		m, err := connectproto.UnmarshalErrorDetail(details[0])
		if err != nil {
			t.Fatal(err)
		}
		details = details[1:]
		return m
	}
	if want.reason != "" {
		info, ok := next().(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != want.reason || info.GetDomain() != rpcerr.Domain || info.GetMetadata()["http_status"] != want.httpStatus {
			t.Errorf("ErrorInfo %v; want reason %s, http_status %q", info, want.reason, want.httpStatus)
		}
		if want.httpStatus == "" && len(info.GetMetadata()) != 0 {
			t.Errorf("ErrorInfo metadata %v; want none", info.GetMetadata())
		}
	}
	if want.badField != "" {
		br, ok := next().(*errdetails.BadRequest)
		if !ok || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != want.badField {
			t.Errorf("BadRequest %v; want one violation of %s", br, want.badField)
		}
	}
	if want.retry != 0 {
		ri, ok := next().(*errdetails.RetryInfo)
		if !ok || ri.GetRetryDelay().AsDuration() != want.retry {
			t.Errorf("RetryInfo %v; want %v", ri, want.retry)
		}
	}
	if m := next(); m != nil {
		t.Errorf("unexpected detail %T %v", m, m)
	}
}

// TestWireErrorsCoverKinds keeps the table whole: every kind of upstream
// failure has a deliberate answer.
func TestWireErrorsCoverKinds(t *testing.T) {
	for k := upstream.KindNotFound; k <= upstream.KindOutcomeUnknown; k++ {
		if w, ok := wireErrors[k]; !ok || w.msg == "" || w.reason == "" {
			t.Errorf("kind %v has no complete entry: %+v", k, w)
		}
	}
}

// TestLocalStoreWording checks that with the embedded local store the
// messages, and the detail that names the value's limit, name it instead
// of Fastly, and that the codes and reasons stay.
func TestLocalStoreWording(t *testing.T) {
	t.Parallel()
	local := wording{"the local store"}
	cases := []struct {
		err  error
		want string
	}{
		{&upstream.StatusError{Op: upstream.OpGet, Status: 503}, "the local store is unavailable; retry later"},
		{&upstream.StatusError{Op: upstream.OpGet, Status: 429}, "the local store's rate limit was reached; retry later"},
		{&upstream.TransportError{Op: upstream.OpGet, Err: errors.New("refused")}, "could not reach the local store"},
		{context.DeadlineExceeded, "deadline exceeded before the local store answered"},
		{&upstream.StatusError{Op: upstream.OpGet, Status: 404}, "item not found"},
	}
	for _, c := range cases {
		fastly, named := wording{}.fromUpstream(c.err, itemSubject), local.fromUpstream(c.err, itemSubject)
		if named.Message() != c.want || named.Code() != fastly.Code() {
			t.Errorf("%v: %v %q, want %v %q", c.err, named.Code(), named.Message(), fastly.Code(), c.want)
		}
	}
	tooLarge := local.fromUpstream(&upstream.StatusError{Op: upstream.OpPut, Status: 413}, itemSubject)
	var described string
	for _, d := range tooLarge.Details() {
		if m, err := connectproto.UnmarshalErrorDetail(d); err == nil {
			if br, ok := m.(*errdetails.BadRequest); ok {
				described = br.GetFieldViolations()[0].GetDescription()
			}
		}
	}
	if described != "value is larger than the local store accepts for this store" {
		t.Errorf("413 field violation = %q", described)
	}
	// The table's own detail is not changed for other callers.
	if d := wireErrors[upstream.KindTooLarge].detail.(*errdetails.BadRequest); !strings.Contains(d.GetFieldViolations()[0].GetDescription(), "Fastly") {
		t.Errorf("the shared detail was rewritten: %v", d)
	}
}

func TestListError(t *testing.T) {
	bad := &upstream.StatusError{Op: upstream.OpList, Status: 400}
	cerr := wording{}.listError(bad, position{upstream: "x"})
	if cerr.Code() != connect.CodeInvalidArgument || cerr.Message() != "invalid request: cursor was refused by Fastly; it is not one kvgate issued" {
		t.Errorf("a 400 from the caller's cursor = %v", cerr)
	}
	checkWire(t, wording{}.listError(bad, position{}), wantWire{connect.CodeInvalidArgument, "Fastly rejected the request as invalid", reasonBadRequest, "400", 0, ""})
	checkWire(t, wording{}.listError(&upstream.StatusError{Op: upstream.OpList, Status: 404}, position{upstream: "x"}),
		wantWire{connect.CodeNotFound, "store not found", reasonNotFound, "404", 0, ""})
}

func TestBatchLineCodes(t *testing.T) {
	cases := map[string]connect.Code{
		"400": connect.CodeInvalidArgument,
		"x":   connect.CodeInvalidArgument,
		"412": connect.CodeFailedPrecondition,
		"413": connect.CodeInvalidArgument,
		"429": connect.CodeResourceExhausted,
		"500": connect.CodeUnavailable,
		"418": connect.CodeUnknown,
	}
	for code, want := range cases {
		if got := wireErrors[upstream.BatchLineError{Code: code}.Kind()].code; got != want {
			t.Errorf("line code %q maps to %v; want %v", code, got, want)
		}
	}
}
