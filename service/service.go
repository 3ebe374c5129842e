// Package service implements fastly.kv.v1.KVStoreService: it validates each
// request, carries it out with the upstream REST client, and maps every
// outcome to a deliberate Connect code. It sees the upstream's failures only
// as [upstream.Kind]s and knows nothing of HTTP.
package service

import (
	"context"
	"sync/atomic"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/badrequest"
	"github.com/kvgate/kvgate/upstream"
)

// MaxListLimit is the largest page ListKeys returns: Fastly's page size.
const MaxListLimit = upstream.DefaultPageSize

// Config configures the service.
type Config struct {
	// MaxValueBytes is the largest value PutItem accepts;
	// upstream.DefaultMaxValueBytes when zero.
	MaxValueBytes int64
	// Batch bounds the batch PUTs of BatchPutItems and PutItems.
	Batch BatchConfig
	// UpstreamName names the upstream in the messages callers see:
	// "Fastly" when empty; "the local store" for kvgate's embedded one.
	UpstreamName string
	// GetItemsConcurrency is how many reads one GetItems call keeps in
	// flight, and so how many values it holds at most;
	// DefaultGetItemsConcurrency when zero.
	GetItemsConcurrency int
	// Watch configures WatchItems: its poll interval floor, the most keys
	// a prefix watch covers and its HEAD concurrency; defaults when zero.
	Watch WatchConfig
	// CopyConcurrency is how many GETs one CopyItems call keeps in flight
	// on its source store; DefaultCopyConcurrency when zero.
	CopyConcurrency int
	// ListMetadataConcurrency is how many HEADs one ListKeys or StreamKeys
	// with include_metadata keeps in flight;
	// DefaultListMetadataConcurrency when zero.
	ListMetadataConcurrency int
	// DeleteConcurrency is how many DELETEs one DeleteKeys call keeps in
	// flight; DefaultDeleteConcurrency when zero.
	DeleteConcurrency int
	// GroupCommit says how PutItem's plain overwrites to one store are
	// committed together in batch PUTs; on, with no linger, when zero.
	GroupCommit GroupCommitConfig
}

// Upstream is what the service needs of the KV REST API; *upstream.Client
// provides it.
type Upstream interface {
	GetItem(ctx context.Context, storeID, key string) (*upstream.Item, error)
	HeadItem(ctx context.Context, storeID, key string) (*upstream.Item, error)
	PutItem(ctx context.Context, storeID, key string, value []byte, opts upstream.PutOptions) error
	DeleteItem(ctx context.Context, storeID, key string, opts upstream.DeleteOptions) error
	ListKeys(ctx context.Context, storeID string, opts upstream.ListOptions) (*upstream.KeyPage, error)
	PutBatch(ctx context.Context, storeID string, body []byte) (*upstream.BatchResult, error)
}

var _ Upstream = (*upstream.Client)(nil)

// Service implements kvv1connect.KVStoreServiceHandler.
type Service struct {
	kvv1connect.UnimplementedKVStoreServiceHandler
	kv       Upstream
	maxValue int64
	batch    BatchConfig
	bodies   *bodyPool
	words    wording
	// copyReads is CopyItems' GETs in flight per call.
	copyReads int
	// deleteConcurrency is DeleteKeys' DELETEs in flight per call.
	deleteConcurrency int
	// group commits PutItem's overwrites together; nil when disabled.
	group *committer
	// draining is set once kvgate is shutting down; see Drain.
	draining atomic.Bool
	// watch runs WatchItems' pollers.
	watch *watchHub
	// batchBytes is the size of the batch bodies being sent; see
	// BatchBytesInFlight.
	batchBytes atomic.Int64
	// getItemsConcurrency bounds the reads of one GetItems call.
	getItemsConcurrency int
	// listMetaConcurrency bounds the HEADs of a listing with
	// include_metadata.
	listMetaConcurrency int
}

// BatchBytesInFlight is the size of the batch PUT bodies the service holds
// while sending them upstream, across every batch write: what metrics
// report as the batch bytes buffered.
func (s *Service) BatchBytesInFlight() int64 { return s.batchBytes.Load() }

// QueuedWrites is how many PutItem overwrites are waiting for the batch
// PUT that will carry them to be sent (see committer).
func (s *Service) QueuedWrites() int { return s.group.queuedWrites() }

// WatchPollers is how many WatchItems pollers run: one per store (and
// token) for watched keys and one per watched prefix, whatever the number
// of watches sharing it.
func (s *Service) WatchPollers() int { return s.watch.pollerCount() }

// Drain tells the service that kvgate is shutting down and that the
// contexts of the RPCs in flight are about to end. Streams then end with
// UNAVAILABLE and what they need to go on elsewhere: StreamKeys its resume
// cursor, BatchPutItems the account of its items, after letting its writes
// in flight finish, CopyItems and DeleteKeys their totals and resume
// cursor, after letting their reads and writes in flight finish.
// WatchItems streams end without an error: a watch resumes elsewhere from
// the state its caller holds.
func (s *Service) Drain() {
	s.draining.Store(true)
	s.watch.drain()
	// Writes waiting for their batch are sent now, not dropped.
	s.group.drain()
}

// errShuttingDown ends a stream cut short by Drain.
var errShuttingDown = connect.NewError(connect.CodeUnavailable, "kvgate is shutting down; retry against another instance")

var _ kvv1connect.KVStoreServiceHandler = (*Service)(nil)

// New returns the service, calling Fastly (or the local store) through kv,
// usually an *upstream.Client.
func New(kv Upstream, opts Config) *Service {
	s := &Service{kv: kv, maxValue: opts.MaxValueBytes, batch: opts.Batch.withDefaults(), words: wording{opts.UpstreamName}}
	if s.maxValue <= 0 {
		s.maxValue = upstream.DefaultMaxValueBytes
	}
	s.bodies = newBodyPool(s.batch.MaxBytes)
	s.getItemsConcurrency = positiveOr(opts.GetItemsConcurrency, DefaultGetItemsConcurrency)
	s.watch = newWatchHub(kv, opts.Watch, s.words, func(store, prefix string) *lister {
		return s.newLister(store, prefix, MaxListLimit, kvv1.Consistency_CONSISTENCY_STRONG)
	})
	s.copyReads = positiveOr(opts.CopyConcurrency, DefaultCopyConcurrency)
	s.listMetaConcurrency = positiveOr(opts.ListMetadataConcurrency, DefaultListMetadataConcurrency)
	s.deleteConcurrency = positiveOr(opts.DeleteConcurrency, DefaultDeleteConcurrency)
	s.group = newCommitter(s, opts.GroupCommit)
	return s
}

// positiveOr is n, or def when n is not positive: a setting's value, or
// its default when left zero.
func positiveOr(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// PutItem writes one item. A plain overwrite may be committed together
// with others to its store in one batch PUT; see committer.
func (s *Service) PutItem(ctx context.Context, req *kvv1.PutItemRequest) (*kvv1.PutItemResponse, error) {
	var v violations
	v.checkStoreID(req.GetStoreId())
	v.checkItemWrite(req, req.IfGenerationMatch, s.maxValue)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if line, size, ok := s.group.groupable(req); ok {
		if err := s.group.put(ctx, req, line, size); err != nil {
			return nil, err
		}
		return &kvv1.PutItemResponse{}, nil
	}
	opts := putOptions(req, req.IfGenerationMatch)
	if err := s.kv.PutItem(ctx, req.GetStoreId(), req.GetKey(), req.GetValue(), opts); err != nil {
		return nil, s.words.fromUpstream(err, itemSubject)
	}
	return &kvv1.PutItemResponse{}, nil
}

// putOptions are the upstream options of an item write; ifGen is its
// if_generation_match, nil when unset.
func putOptions(w itemWrite, ifGen *uint64) upstream.PutOptions {
	opts := upstream.PutOptions{
		Mode:              putModes[w.GetMode()],
		BackgroundFetch:   w.GetBackgroundFetch(),
		IfGenerationMatch: ifGen,
		Metadata:          w.GetMetadata(),
	}
	if ttl := w.GetTimeToLive(); ttl != nil {
		opts.TimeToLive = ttl.AsDuration()
	}
	return opts
}

var putModes = map[kvv1.PutMode]upstream.PutMode{
	kvv1.PutMode_PUT_MODE_UNSPECIFIED: upstream.PutOverwrite,
	kvv1.PutMode_PUT_MODE_ADD:         upstream.PutAdd,
	kvv1.PutMode_PUT_MODE_APPEND:      upstream.PutAppend,
	kvv1.PutMode_PUT_MODE_PREPEND:     upstream.PutPrepend,
}

// DeleteItem deletes one item.
func (s *Service) DeleteItem(ctx context.Context, req *kvv1.DeleteItemRequest) (*kvv1.DeleteItemResponse, error) {
	if err := checkItemTarget(req.GetStoreId(), req.GetKey()); err != nil {
		return nil, err
	}
	opts := upstream.DeleteOptions{Force: req.GetForce(), IfGenerationMatch: req.IfGenerationMatch}
	if err := s.kv.DeleteItem(ctx, req.GetStoreId(), req.GetKey(), opts); err != nil {
		return nil, s.words.fromUpstream(err, itemSubject)
	}
	return &kvv1.DeleteItemResponse{}, nil
}

// ListKeys returns one page of keys.
//
// Fastly refuses some characters in its prefix query that keys may hold
// ("/", ":", "*", ...). For such a prefix kvgate asks Fastly for the longest
// leading part it accepts and keeps only the keys that match the whole
// prefix, fetching further pages while a page holds no match, and ending
// the listing as soon as the byte-ordered keys pass the prefix. With
// include_metadata each key of the page is read with a HEAD; see
// listKeysWithMetadata.
func (s *Service) ListKeys(ctx context.Context, req *kvv1.ListKeysRequest) (*kvv1.ListKeysResponse, error) {
	pos, cerr := checkListing(req.GetStoreId(), req.GetPrefix(), req.GetCursor(), req.GetLimit(), "limit", req.GetConsistency())
	if cerr != nil {
		return nil, cerr
	}
	l := s.newLister(req.GetStoreId(), req.GetPrefix(), req.GetLimit(), req.GetConsistency())
	if req.GetIncludeMetadata() {
		return s.listKeysWithMetadata(ctx, req, l, pos)
	}
	pg, err := l.fetchNonEmpty(ctx, pos)
	if err != nil {
		return nil, s.words.listError(err, pos)
	}
	return &kvv1.ListKeysResponse{
		Keys:       pg.keys,
		NextCursor: encodeCursor(req.GetStoreId(), req.GetPrefix(), pg.next),
	}, nil
}

func (s *Service) newLister(store, prefix string, pageSize uint32, c kvv1.Consistency) *lister {
	if pageSize == 0 {
		pageSize = MaxListLimit
	}
	return &lister{
		kv:          s.kv,
		store:       store,
		filter:      newPrefixFilter(prefix),
		pageSize:    int(pageSize),
		consistency: consistencies[c],
	}
}

var consistencies = map[kvv1.Consistency]upstream.Consistency{
	kvv1.Consistency_CONSISTENCY_UNSPECIFIED: upstream.ConsistencyStrong,
	kvv1.Consistency_CONSISTENCY_STRONG:      upstream.ConsistencyStrong,
	kvv1.Consistency_CONSISTENCY_EVENTUAL:    upstream.ConsistencyEventual,
}

// listError maps a failed listing. A kvgate cursor wraps Fastly's without
// signing it, so one made by hand can carry a cursor Fastly refuses; that
// 400 is the caller's cursor, and is named as such.
func (w wording) listError(err error, from position) *connect.Error {
	if from.upstream != "" && upstream.KindOf(err) == upstream.KindBadRequest {
		return badrequest.Field("cursor", w.say("cursor was refused by Fastly; it is not one kvgate issued")).WithCause(err)
	}
	return w.fromUpstream(err, storeSubject)
}
