package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/service"
)

// Cache policies of GetItem's Connect GET responses.
//
// An item's generation is its entity tag, so browsers and HTTP caches may
// keep a read and revalidate it with If-None-Match, which costs kvgate a
// HEAD upstream and moves no value. They must never hand out a kept copy
// without asking, since a stale generation turns every compare-and-set into
// ABORTED: hence no-cache (store, but revalidate on every use), not a
// max-age. When kvgate checks callers' credentials, private also keeps
// shared caches (CDNs, proxies) from storing what one caller may read for
// another; a browser's own cache still revalidates, so every reuse passes
// kvgate's checks again.
const (
	cacheRevalidate        = "no-cache"
	cachePrivateRevalidate = "private, no-cache"
	// cacheNever marks every other GET response, GetItem's failures
	// included, as Fastly marks its own.
	cacheNever = "no-store"
)

// conditionalGets gives GetItem's Connect GET responses an ETag (the
// item's generation, quoted: a strong validator, since one generation is
// one value and metadata) and the cache policy cacheControl, and honours
// If-None-Match: the generations it names reach the service (see
// service.WithHeldGenerations), which then checks with a HEAD alone, and
// an answer of not_modified for one of them becomes 304 Not Modified with
// no body. A 304 only ever answers a GET: POST requests, gRPC and gRPC-Web
// pass untouched, and their callers use if_generation_not_match.
//
// It runs outermost in the chain: a 304 is the RPC's success, and the
// interceptors inside it (the RPC log, telemetry) see it as one.
func conditionalGets(cacheControl string) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if spec.Procedure != kvv1connect.KVStoreServiceGetItemProcedure {
				return next(ctx, spec, stream)
			}
			httpInfo, ok := connecthttp.ServerInfoForContext(ctx)
			call, hasCall := connect.CallInfoForServerContext(ctx)
			if !ok || !hasCall || httpInfo.HTTPMethod() != http.MethodGet {
				return next(ctx, spec, stream)
			}
			cs := &conditionalStream{ServerStream: stream, header: call.ResponseHeader(), cacheControl: cacheControl}
			if values := call.RequestHeader().Values("If-None-Match"); len(values) > 0 {
				cs.held, cs.conditional = parseIfNoneMatch(values), true
				ctx = service.WithHeldGenerations(ctx, cs.held)
			}
			if err := next(ctx, spec, cs); err != nil {
				return err
			}
			if cs.notModified {
				return connecthttp.NewNotModifiedError()
			}
			return nil
		}
	}
}

// conditionalStream decorates GetItem's answer to a GET, and holds it
// back when it is a 304.
type conditionalStream struct {
	connect.ServerStream
	header       *connect.Header
	cacheControl string
	// held is what If-None-Match named; conditional says it was sent.
	held        service.HeldGenerations
	conditional bool
	// notModified is set once the answer is a 304.
	notModified bool
}

func (s *conditionalStream) Send(msg any) error {
	res, ok := msg.(*kvv1.GetItemResponse)
	if !ok || res.GetItem() == nil {
		return s.ServerStream.Send(msg)
	}
	gen := res.GetItem().GetGeneration()
	s.header.Set("ETag", formatETag(gen))
	s.header.Set("Cache-Control", s.cacheControl)
	// not_modified may answer the request's if_generation_not_match
	// alone; only a match of If-None-Match is a 304.
	if s.conditional && res.GetNotModified() && s.held.Matches(gen) {
		s.notModified = true
		return nil
	}
	return s.ServerStream.Send(msg)
}

// formatETag is the entity tag of generation gen: its decimal form,
// quoted.
func formatETag(gen uint64) string { return `"` + strconv.FormatUint(gen, 10) + `"` }

// parseIfNoneMatch reads If-None-Match header values (RFC 9110 §13.1.2):
// "*", or a list of entity tags. Comparison is weak, as the RFC requires
// for If-None-Match, so a W/ prefix is ignored. A tag that is not a
// generation kvgate issued (the decimal form of a uint64, quoted) matches
// nothing; reading stops at the first malformed element, whose list
// cannot be trusted further.
func parseIfNoneMatch(values []string) service.HeldGenerations {
	var held service.HeldGenerations
	for _, v := range values {
		for rest := v; ; {
			rest = strings.TrimLeft(rest, " \t,")
			if rest == "" {
				break
			}
			if r, ok := strings.CutPrefix(rest, "*"); ok {
				held.Any = true
				rest = r
				continue
			}
			rest = strings.TrimPrefix(rest, "W/")
			if !strings.HasPrefix(rest, `"`) {
				break
			}
			tag, after, ok := strings.Cut(rest[1:], `"`)
			if !ok {
				break
			}
			rest = after
			if gen, err := strconv.ParseUint(tag, 10, 64); err == nil && strconv.FormatUint(gen, 10) == tag {
				held.Generations = append(held.Generations, gen)
			}
		}
	}
	return held
}

// noStoreGETs marks Connect GET responses uncacheable, as Fastly marks its
// own: a cached read would hand out stale values and generations, and a
// stale generation turns every compare-and-set into ABORTED. GetItem sets
// its own policy on the answers it gives (see conditionalGets); every
// other GetItem response, a failure or a protocol error, gets no-store
// too.
func noStoreGETs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if r.URL.Path == kvv1connect.KVStoreServiceGetItemProcedure {
				w = &defaultNoStore{ResponseWriter: w}
			} else {
				w.Header().Set("Cache-Control", cacheNever)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// defaultNoStore adds Cache-Control: no-store to a response whose handler
// set no Cache-Control of its own by the time the header is written.
type defaultNoStore struct {
	http.ResponseWriter
	wrote bool
}

func (w *defaultNoStore) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if h := w.Header(); h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", cacheNever)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *defaultNoStore) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *defaultNoStore) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *defaultNoStore) Unwrap() http.ResponseWriter { return w.ResponseWriter }
