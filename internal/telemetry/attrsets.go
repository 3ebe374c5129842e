package telemetry

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// attrSets hands out the measurement option of each label combination,
// built once: an attribute set built per measurement is several
// allocations and a sort on every RPC and every upstream attempt. The
// keys come from small closed sets (procedures, codes, calls, methods,
// HTTP statuses), so the cache stays small.
type attrSets[K comparable] struct {
	build func(K) []attribute.KeyValue

	mu sync.RWMutex
	m  map[K]metric.MeasurementOption
}

func newAttrSets[K comparable](build func(K) []attribute.KeyValue) *attrSets[K] {
	return &attrSets[K]{build: build, m: make(map[K]metric.MeasurementOption)}
}

func (c *attrSets[K]) get(k K) metric.MeasurementOption {
	c.mu.RLock()
	opt, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return opt
	}
	opt = metric.WithAttributeSet(attribute.NewSet(c.build(k)...))
	c.mu.Lock()
	c.m[k] = opt
	c.mu.Unlock()
	return opt
}
