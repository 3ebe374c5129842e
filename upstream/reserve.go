package upstream

import (
	"context"
	"errors"
)

// ReservationError is a GET that could not hold memory for its value:
// [ClientConfig.ReserveValue] refused. It is not retried; Err is the
// refusal, as ReserveValue returned it.
type ReservationError struct {
	Op  Op
	Err error
}

func (e *ReservationError) Error() string {
	return string(e.Op) + ": no memory for the value: " + e.Err.Error()
}

func (e *ReservationError) Unwrap() error { return e.Err }

func isReservationError(err error) bool {
	_, ok := errors.AsType[*ReservationError](err)
	return ok
}

// reserveValue holds memory for a GET's value of contentLength bytes (-1
// when unknown: the largest value is held).
func (c *Client) reserveValue(ctx context.Context, contentLength int64) error {
	if c.reserve == nil {
		return nil
	}
	n := contentLength
	if n < 0 || n > c.maxValue {
		n = c.maxValue
	}
	if err := c.reserve(ctx, n); err != nil {
		return &ReservationError{Op: OpGet, Err: err}
	}
	return nil
}
