package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// bodyWatch is a transport that notes whether the request bodies it was
// given have been closed, which http.Transport does once it has stopped
// reading them.
type bodyWatch struct {
	next   http.RoundTripper
	opened atomic.Int64
	closed atomic.Int64
}

func (b *bodyWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		b.opened.Add(1)
		r.Body = &watchedBody{ReadCloser: r.Body, closed: &b.closed}
	}
	return b.next.RoundTrip(r)
}

type watchedBody struct {
	io.ReadCloser
	closed *atomic.Int64
	done   atomic.Bool
}

// Close counts the closing before passing it on: the write under test
// returns as soon as the inner body reports it, and the count must be
// visible by then.
func (w *watchedBody) Close() error {
	if !w.done.Swap(true) {
		w.closed.Add(1)
	}
	return w.ReadCloser.Close()
}

// TestWritesReturnAfterTheBodyIsReleased checks that a write returns only
// once the transport has let go of its body, even when the server answers
// before reading the body: callers reuse the body's buffer (pooled batch
// bodies and values) as soon as the call returns.
func TestWritesReturnAfterTheBodyIsReleased(t *testing.T) {
	t.Parallel()
	// A server that answers 413 as soon as it has the request's headers
	// and then reads nothing more for a while, as one refusing an
	// oversized request may: the transport has the answer while it is
	// still sending the body.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n")
				time.Sleep(time.Second)
			}()
		}
	}()
	srvURL := "http://" + ln.Addr().String()
	watch := &bodyWatch{next: upstream.NewHTTPClient(4).Transport}
	client, err := upstream.NewClient(upstream.ClientConfig{
		BaseURL:    srvURL,
		HTTPClient: &http.Client{Transport: watch},
		Retry:      upstream.RetryPolicy{MaxAttempts: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("v"), 8<<20)
	cases := []struct {
		name string
		call func() error
	}{
		{"put", func() error {
			return client.PutItem(context.Background(), "s", "k", value, upstream.PutOptions{})
		}},
		{"batch", func() error {
			_, err := client.PutBatch(context.Background(), "s", value)
			return err
		}},
	}
	for _, tc := range cases {
		if err := tc.call(); err == nil {
			t.Fatalf("%s: the refused write succeeded", tc.name)
		}
		if opened, closed := watch.opened.Load(), watch.closed.Load(); opened == 0 || closed != opened {
			t.Fatalf("%s returned with %d of %d request bodies still held by the transport", tc.name, opened-closed, opened)
		}
	}
}
