package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"
)

// fileTokens is the token file's form:
//
//	tokens:
//	  - name: ci-writer
//	    sha256: "<64 hex digits>"
//	    stores: ["demo", "staging-*"]
//	    allow: [read, write, delete]
//	    rate: 50    # requests per second; optional
//	    burst: 100  # optional; rate rounded up when unset
type fileTokens struct {
	Tokens []fileToken `yaml:"tokens"`
}

type fileToken struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Stores []string `yaml:"stores"`
	Allow  []string `yaml:"allow"`
	Rate   float64  `yaml:"rate"`
	Burst  int      `yaml:"burst"`
}

// maxTokenFileBytes bounds the token file kvgate reads.
const maxTokenFileBytes = 4 << 20

// parseTokens reads and checks a token file. Errors name the entry by its
// position and name, and never quote a sha256.
func parseTokens(data []byte) (*tokenSet, error) {
	var f fileTokens
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the token file is empty; it needs a tokens: list")
		}
		return nil, fmt.Errorf("reading the token file: %w", err)
	}
	if f.Tokens == nil {
		return nil, errors.New("the token file has no tokens: list")
	}
	set := &tokenSet{}
	names := map[string]bool{}
	hashes := map[[32]byte]string{}
	for i, ft := range f.Tokens {
		label := fmt.Sprintf("token %d", i+1)
		if ft.Name != "" {
			label = fmt.Sprintf("token %d (%q)", i+1, ft.Name)
		}
		e, err := ft.entry()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if names[e.name] {
			return nil, fmt.Errorf("%s: the name is used by an earlier token", label)
		}
		if other, dup := hashes[e.hash]; dup {
			return nil, fmt.Errorf("%s: the same sha256 as token %q", label, other)
		}
		names[e.name], hashes[e.hash] = true, e.name
		set.entries = append(set.entries, e)
	}
	return set, nil
}

// entry checks one token's fields and builds its entry.
func (ft fileToken) entry() (*tokenEntry, error) {
	e := &tokenEntry{name: ft.Name}
	if ft.Name == "" {
		return nil, errors.New("name is required (logs show it in place of the token)")
	}
	raw, err := hex.DecodeString(ft.SHA256)
	if err != nil || len(raw) != len(e.hash) {
		return nil, errors.New("sha256 must be 64 hex digits, the SHA-256 of the token")
	}
	copy(e.hash[:], raw)
	if len(ft.Stores) == 0 {
		return nil, errors.New(`stores must list at least one store id or pattern ("*" for every store)`)
	}
	for _, s := range ft.Stores {
		p, err := parseStorePattern(s)
		if err != nil {
			return nil, err
		}
		e.stores = append(e.stores, p)
	}
	if len(ft.Allow) == 0 {
		return nil, errors.New("allow must list at least one of read, write, delete")
	}
	for _, a := range ft.Allow {
		r, ok := rightsByName[a]
		if !ok {
			return nil, fmt.Errorf("allow: unknown right %q (known: read, write, delete)", a)
		}
		e.rights |= r
	}
	switch {
	case ft.Rate < 0 || ft.Burst < 0:
		return nil, errors.New("rate and burst must not be negative")
	case ft.Burst > 0 && ft.Rate == 0:
		return nil, errors.New("burst needs a rate")
	case ft.Rate > 0:
		e.rate, e.burst = rate.Limit(ft.Rate), ft.Burst
		if e.burst == 0 {
			e.burst = max(1, int(ft.Rate+0.999999))
		}
	}
	return e, nil
}

// storePattern is one entry of a token's stores: an exact store id, or a
// prefix when it ended in "*".
type storePattern struct {
	id     string
	prefix bool
}

func parseStorePattern(s string) (storePattern, error) {
	body, prefix := strings.CutSuffix(s, "*")
	switch {
	case s == "":
		return storePattern{}, errors.New("stores: an entry is empty")
	case strings.Contains(body, "*"):
		return storePattern{}, fmt.Errorf("stores: %q may have * only at its end", s)
	}
	return storePattern{id: body, prefix: prefix}, nil
}

func (p storePattern) matches(store string) bool {
	if p.prefix {
		return strings.HasPrefix(store, p.id)
	}
	return store == p.id
}
