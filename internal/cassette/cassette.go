// Package cassette reads go-vcr v1 cassettes: the YAML files in which
// dnaeon/go-vcr v1 (used by fastly/go-fastly's tests) recorded real HTTP
// interactions. It only loads them; tests decide how to replay or compare.
//
// What the format keeps matters to anyone comparing against it: a recorded
// request holds only the http.Request's Header map, so Content-Length and
// Host were sent but never recorded, and go-fastly's recorder deletes
// Fastly-Key before saving. Recorded responses keep every header.
package cassette

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Version is the only cassette format version this package reads.
const Version = 1

// Cassette is one recorded file: its interactions in the order they happened.
type Cassette struct {
	Version      int           `yaml:"version"`
	Interactions []Interaction `yaml:"interactions"`
}

// Interaction is one request and the response it got.
type Interaction struct {
	Request  Request  `yaml:"request"`
	Response Response `yaml:"response"`
}

// Request is a recorded request.
type Request struct {
	// Body is the request body as sent.
	Body string `yaml:"body"`
	// Form is the parsed form, which go-vcr records for form posts only.
	Form url.Values `yaml:"form"`
	// Headers is the request's Header map, with canonical keys.
	Headers http.Header `yaml:"headers"`
	// URL is the full URL as sent, with its escaped path and raw query.
	URL    string `yaml:"url"`
	Method string `yaml:"method"`
}

// Response is a recorded response.
type Response struct {
	Body    string      `yaml:"body"`
	Headers http.Header `yaml:"headers"`
	// Status is the status line's text, such as "412 Precondition Failed".
	Status string `yaml:"status"`
	// Code is the status code.
	Code int `yaml:"code"`
	// Duration is go-vcr's timing field; the Fastly recordings leave it empty.
	Duration string `yaml:"duration"`
}

// ParsedURL parses the recorded URL. Its EscapedPath and RawQuery are the
// path and query exactly as they went on the wire.
func (r Request) ParsedURL() (*url.URL, error) {
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, fmt.Errorf("cassette: recorded URL %q: %w", r.URL, err)
	}
	return u, nil
}

// Load reads and parses the cassette at path.
func Load(path string) (*Cassette, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cassette: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cassette %s: %w", path, err)
	}
	return c, nil
}

// Parse parses a cassette. Unknown fields are refused, and so is a cassette
// without interactions, so that a file in another format (such as go-vcr
// v2's) or a truncated one fails loudly instead of replaying nothing.
func Parse(data []byte) (*Cassette, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Cassette
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	if c.Version != Version {
		return nil, fmt.Errorf("version %d; only version %d is supported", c.Version, Version)
	}
	for i, in := range c.Interactions {
		switch {
		case in.Request.Method == "" || in.Request.URL == "":
			return nil, fmt.Errorf("interaction %d: request lacks a method or URL", i)
		case in.Response.Code < 100 || in.Response.Code > 999:
			return nil, fmt.Errorf("interaction %d: response code %d is not an HTTP status", i, in.Response.Code)
		}
		if _, err := in.Request.ParsedURL(); err != nil {
			return nil, fmt.Errorf("interaction %d: %w", i, err)
		}
	}
	if len(c.Interactions) == 0 {
		return nil, errors.New("no interactions")
	}
	return &c, nil
}

// UnderPath returns the interactions whose request path (escaped) starts
// with prefix, in recorded order.
func (c *Cassette) UnderPath(prefix string) ([]Interaction, error) {
	var out []Interaction
	for _, in := range c.Interactions {
		u, err := in.Request.ParsedURL()
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(u.EscapedPath(), prefix) {
			out = append(out, in)
		}
	}
	return out, nil
}
