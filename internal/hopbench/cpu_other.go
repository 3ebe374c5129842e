//go:build !linux

package hopbench

import (
	"errors"
	"time"
)

// cpuReader is Linux-only: elsewhere the report leaves CPU out.
func cpuReader(int) (read func() (time.Duration, error), source string, err error) {
	return nil, "", errors.New("per-process CPU time is read on Linux only")
}

// machineBusy is Linux-only.
func machineBusy() (time.Duration, error) {
	return 0, errors.New("the machine's CPU time is read on Linux only")
}
