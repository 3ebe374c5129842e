package hopbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// adminClient reads the hop processes' admin endpoints, apart from the
// contenders' clients.
var adminClient = &http.Client{Timeout: 2 * time.Minute}

// fetch GETs url and returns its body, failing on a status other than 200.
func fetch(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// kvgateMallocs reads kvgate's heap allocation count from the allocation
// profile's text form, which ends with runtime.MemStats: kvgate's /metrics
// carries no Go runtime metrics. The read itself allocates in kvgate;
// measure takes that off.
func kvgateMallocs(admin string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		body, err := fetch(ctx, admin+"/debug/pprof/allocs?debug=1")
		if err != nil {
			return 0, err
		}
		defer body.Close()
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "# Mallocs = "); ok {
				return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		if err := sc.Err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("kvgate's allocation profile has no Mallocs line")
	}
}

// proxyMallocs reads the proxy process's heap allocation count.
func proxyMallocs(admin string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		body, err := fetch(ctx, admin+"/mallocs")
		if err != nil {
			return 0, err
		}
		defer body.Close()
		b, err := io.ReadAll(body)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
}

// profiler saves the profiles of a hop process's runs into dir.
type profiler struct {
	dir string
}

// around returns the function measure runs around a run to profile it:
// the process's allocation profile before the run, a CPU profile of
// about d from the start of the run, and the allocation profile after it,
// into files named after name. The CPU profile covers whole seconds, at
// least one; measure waits for it before the next run.
func (p profiler) around(ctx context.Context, admin, name string, d time.Duration) func() (func() error, error) {
	base := filepath.Join(p.dir, name)
	return func() (func() error, error) {
		if err := p.save(ctx, admin+"/debug/pprof/allocs", base+".allocs-before.pprof"); err != nil {
			return nil, err
		}
		seconds := max(1, int(math.Round(d.Seconds())))
		cpuDone := make(chan error, 1)
		go func() {
			cpuDone <- p.save(ctx, admin+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds), base+".cpu.pprof")
		}()
		return func() error {
			if err := <-cpuDone; err != nil {
				return err
			}
			return p.save(ctx, admin+"/debug/pprof/allocs", base+".allocs-after.pprof")
		}, nil
	}
}

// save writes what url serves to file.
func (p profiler) save(ctx context.Context, url, file string) error {
	body, err := fetch(ctx, url)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
