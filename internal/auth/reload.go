package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"
)

// Reload reads the token file again and, when it parses, makes its tokens
// the ones callers are checked against; kvgate calls it on SIGHUP. A file
// that fails to read or parse keeps the tokens in use, and the error (which
// quotes no token or hash) says why.
func (g *Guard) Reload() error {
	if g.cfg.TokensFile == "" {
		return nil
	}
	return g.load(true)
}

// Watch reloads the token file whenever its content changes, until ctx
// ends. It polls: a poll every second costs one read of a small file, and
// it sees every way a file is replaced (written in place, renamed over,
// a Kubernetes ConfigMap's symlink swapped, a network file system), which
// file-system notifications on the file do not.
func (g *Guard) Watch(ctx context.Context) {
	if g.cfg.TokensFile == "" {
		return
	}
	tick := time.NewTicker(g.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = g.load(false)
		}
	}
}

// load reads the token file and swaps in its tokens; unless force is set,
// a file whose content has not changed since the last read is left alone.
func (g *Guard) load(force bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	path := g.cfg.TokensFile
	data, err := readTokenFile(path)
	if err != nil {
		if force || !g.readFailing {
			g.logger.Error("cannot read the token file; the previous tokens stay in use", "file", path, "err", err)
		}
		g.readFailing = true
		return err
	}
	g.readFailing = false
	sum := sha256.Sum256(data)
	if !force && sum == g.sum {
		return nil
	}
	g.sum = sum
	set, err := parseTokens(data)
	if err != nil {
		g.logger.Error("token file rejected; the previous tokens stay in use", "file", path, "err", err)
		return fmt.Errorf("token file %s: %w", path, err)
	}
	set.startLimiters(g.tokens.Load())
	g.tokens.Store(set)
	g.logger.Info("token file loaded", "file", path, "tokens", len(set.entries))
	return nil
}

// readTokenFile reads the token file, refusing one too large to be one.
func readTokenFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTokenFileBytes {
		return nil, fmt.Errorf("the token file is larger than %d bytes", maxTokenFileBytes)
	}
	return data, nil
}
