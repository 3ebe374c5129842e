package hopbench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// cpuReader returns a function that reads the CPU time (user and system,
// all threads, those that have exited included) process pid has used so
// far, and a description of its source for the report. It prefers the
// process's CPU-time clock, the one clock_getcpuclockid(3) names, which
// counts nanoseconds; /proc/PID/stat counts 10 ms clock ticks, too coarse
// for the cheap requests of a short run, and serves when the clock is
// refused.
func cpuReader(pid int) (read func() (time.Duration, error), source string, err error) {
	clock := func() (time.Duration, error) { return cpuClock(pid) }
	if _, err := clock(); err == nil {
		return clock, "each process's CPU-time clock (ns)", nil
	}
	stat := func() (time.Duration, error) { return procStatCPU(pid) }
	if _, err := stat(); err != nil {
		return nil, "", err
	}
	return stat, "/proc/PID/stat utime+stime (10 ms ticks)", nil
}

// cpuClock reads process pid's CPU-time clock.
func cpuClock(pid int) (time.Duration, error) {
	// The kernel's encoding of a process CPU clock (MAKE_PROCESS_CPUCLOCK):
	// the complemented pid shifted past the clock type, CPUCLOCK_SCHED (2),
	// the scheduler's exact runtime of the whole thread group.
	const cpuclockSched = 2
	id := ^int32(pid)<<3 | cpuclockSched
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(id), uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, errno
	}
	return time.Duration(ts.Nano()), nil
}

// procStatCPU reads utime+stime from /proc/PID/stat, in clock ticks of
// 10 ms (USER_HZ is 100 on every Linux architecture Go supports).
func procStatCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, field := range f[11:13] {
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// machineBusy reads the CPU time all processes on the machine have used
// so far, from the first line of /proc/stat (10 ms ticks): everything but
// the idle and I/O wait times.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected format")
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal: guest time is
	// already counted in user.
	for i, field := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
