package membudget

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The default budget is a quarter of the memory kvgate may use: the
// cgroup's limit (/sys/fs/cgroup/memory.max, cgroup v2) when it has one,
// else the machine's (MemTotal in /proc/meminfo); the rest is left for
// the Go runtime, connection buffers, garbage awaiting collection and,
// when kvgate runs it, the local store. It is never below DefaultFloor
// nor above DefaultCap, and never below what one largest value needs.
const (
	DefaultFraction = 4
	DefaultFloor    = 256 << 20
	DefaultCap      = 8 << 30
	// fallbackMemory stands for the machine when its memory is unknown.
	fallbackMemory = 2 << 30
)

// Default returns the default budget for a machine with memory bytes
// available (see [AvailableMemory]) and a largest value of maxValue
// bytes: memory/4, within [DefaultFloor, DefaultCap], and at least
// [Minimum](maxValue).
func Default(memory, maxValue int64) int64 {
	if memory <= 0 {
		memory = fallbackMemory
	}
	return max(min(max(memory/DefaultFraction, DefaultFloor), DefaultCap), Minimum(maxValue))
}

// messageSlack is room beside a value for the rest of its message: key,
// metadata, other fields and framing.
const messageSlack = 64 << 10

// Minimum is the smallest budget that lets one request carrying the
// largest value proceed: its message is charged twice, for the bytes
// read off the wire and for the decoded value.
func Minimum(maxValue int64) int64 { return 2 * (maxValue + messageSlack) }

// AvailableMemory returns the memory kvgate may use: its cgroup's limit
// when set, else the machine's total, else 0 when neither is known.
func AvailableMemory() int64 {
	if raw, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "MemTotal:       16314404 kB"
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "MemTotal:" && fields[2] == "kB" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

var sizeSuffixes = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}}

// ParseSize parses a byte count: a plain integer ("268435456") or an
// integer with a binary suffix KiB, MiB, GiB or TiB ("256MiB").
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	shift := uint(0)
	for _, u := range sizeSuffixes {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = strings.TrimSpace(num), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a byte count (an integer, optionally with KiB, MiB, GiB or TiB)", s)
	}
	return n << shift, nil
}

// FormatSize writes n in the largest binary unit that divides it.
func FormatSize(n int64) string {
	for i := len(sizeSuffixes) - 1; i >= 0; i-- {
		u := sizeSuffixes[i]
		if n > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
