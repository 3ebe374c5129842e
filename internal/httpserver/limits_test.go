package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// generous bounds every wait for a cut-off; the timeouts under test are
// a small fraction of it.
const generous = 10 * time.Second

// shortTimeout is the header and stall timeout the tests configure.
const shortTimeout = 200 * time.Millisecond

// serveWith runs Run on a loopback listener with opts until the test ends
// and returns its address.
func serveWith(t *testing.T, handler http.Handler, cfg Config, opts ...Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, ln, handler, append([]Option{WithConfig(cfg)}, opts...)...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ln.Addr().String()
}

func quickConfig() Config {
	return Config{ReadHeaderTimeout: shortTimeout, IdleTimeout: time.Minute, ShutdownTimeout: time.Second}
}

// readBodyHandler reads the whole body and reports the read's error on
// errs; it answers 408 to a stalled body and 200 otherwise.
func readBodyHandler(errs chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		errs <- err
		if errors.Is(err, ErrBodyStalled) {
			w.WriteHeader(http.StatusRequestTimeout)
		}
	})
}

// waitClosed reads from c until the server closes it (or resets it), and
// fails if that takes the generous bound.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if err := closedWithin(c, generous); err != nil {
		t.Fatal(err)
	}
}

// closedWithin reads from c until the server closes it, and returns an
// error if that takes longer than wait.
func closedWithin(c net.Conn, wait time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return fmt.Errorf("the server did not close the connection within %v", wait)
	}
	return nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSlowHTTP1HeadersCutOff(t *testing.T) {
	t.Parallel()
	addr := serveWith(t, http.NotFoundHandler(), quickConfig())
	c := dial(t, addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
}

// h2Conn opens an HTTP/2 connection, cleartext or TLS with ALPN h2, and
// returns a Framer on it after the preface and SETTINGS.
func h2Conn(t *testing.T, addr string, tlsConfig *tls.Config) (net.Conn, *http2.Framer) {
	t.Helper()
	c := dial(t, addr)
	if tlsConfig != nil {
		tc := tls.Client(c, tlsConfig)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("ALPN chose %q, not h2", p)
		}
		c = tc
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

// TestHTTP2ContinuationDribbleCutOff opens several HTTP/2 connections, each
// sending a header block one CONTINUATION byte at a time, and checks that
// the server closes every one of them, cleartext and TLS alike.
func TestHTTP2ContinuationDribbleCutOff(t *testing.T) {
	t.Parallel()
	ca, files := serverFiles(t, 1)
	files.ClientCAFile = ""
	tlsConfig, err := LoadTLS(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		opts   []Option
		client *tls.Config
	}{
		{name: "h2c"},
		{name: "tls", opts: []Option{WithTLS(tlsConfig)}, client: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{"h2"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := serveWith(t, http.NotFoundHandler(), quickConfig(), tc.opts...)
			var block bytes.Buffer
			enc := hpack.NewEncoder(&block)
			for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
				{Name: ":path", Value: "/"}, {Name: ":authority", Value: "localhost"}, {Name: "x-slow", Value: strings.Repeat("a", 4096)}} {
				if err := enc.WriteField(f); err != nil {
					t.Fatal(err)
				}
			}
			const conns = 5
			errs := make(chan error, conns)
			for range conns {
				c, fr := h2Conn(t, addr, tc.client)
				go dribbleHeaders(fr, block.Bytes())
				go func() { errs <- closedWithin(c, generous) }()
			}
			for range conns {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// dribbleHeaders sends block as a HEADERS frame of one byte followed by
// one-byte CONTINUATION frames, until the connection fails.
func dribbleHeaders(fr *http2.Framer, block []byte) {
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1]}); err != nil {
		return
	}
	for i := 1; i < len(block)-1; i++ {
		time.Sleep(10 * time.Millisecond)
		if err := fr.WriteContinuation(1, false, block[i:i+1]); err != nil {
			return
		}
	}
}

func TestStalledBodyCutOff(t *testing.T) {
	t.Parallel()
	limits := Limits{BodyStallTimeout: shortTimeout}
	t.Run("http1", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 1)
		addr := serveWith(t, readBodyHandler(errs), quickConfig(), WithLimits(limits))
		c := dial(t, addr)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2048\r\n\r\n%s", strings.Repeat("a", 1024))
		if err := waitErr(t, errs); !errors.Is(err, ErrBodyStalled) {
			t.Fatalf("body read error = %v, want ErrBodyStalled", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(generous))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusRequestTimeout || !res.Close {
			t.Errorf("answer %d, closing %v; want 408 and the connection closed", res.StatusCode, res.Close)
		}
		waitClosed(t, c)
	})
	t.Run("h2c", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 1)
		addr := serveWith(t, readBodyHandler(errs), quickConfig(), WithLimits(limits))
		body, stall := io.Pipe()
		defer stall.Close()
		go func() { _, _ = stall.Write(make([]byte, 1024)) }()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr, body)
		if err != nil {
			t.Fatal(err)
		}
		res := <-send(h2cClient(t), req)
		if err := waitErr(t, errs); !errors.Is(err, ErrBodyStalled) {
			t.Fatalf("body read error = %v, want ErrBodyStalled", err)
		}
		if res.err != nil {
			t.Logf("stream reset: %v", res.err)
		}
	})
}

func waitErr(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(generous):
		t.Fatal("the handler's body read was not cut off")
		return nil
	}
}

// TestProgressingBodyNotCutOff sends a body in small pieces for several
// stall timeouts, each piece well within one: the stall bound is an idle
// bound, and the body must arrive whole.
func TestProgressingBodyNotCutOff(t *testing.T) {
	t.Parallel()
	const pieces = 12
	clients := map[string]func(*testing.T) *http.Client{"http1": http1Client, "h2c": h2cClient}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			errs := make(chan error, 1)
			addr := serveWith(t, readBodyHandler(errs), quickConfig(), WithLimits(Limits{BodyStallTimeout: 2 * shortTimeout}))
			body, w := io.Pipe()
			go func() {
				for range pieces {
					time.Sleep(shortTimeout / 4)
					if _, err := w.Write([]byte("piece")); err != nil {
						return
					}
				}
				w.Close()
			}()
			req, err := http.NewRequest(http.MethodPost, "http://"+addr, body)
			if err != nil {
				t.Fatal(err)
			}
			res := <-send(client(t), req)
			if err := waitErr(t, errs); err != nil || res.err != nil {
				t.Fatalf("body read: %v; response: %v", err, res.err)
			}
		})
	}
}

// TestConnectionCap holds MaxConns connections open and checks that one
// more is served only once one of them closes.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	const maxConns = 2
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	addr := serveWith(t, ok, quickConfig(), WithLimits(Limits{MaxConns: maxConns}))
	get := func(c net.Conn, wait time.Duration) error {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(wait))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			res.Body.Close()
		}
		return err
	}
	var held []net.Conn
	for range maxConns {
		c := dial(t, addr)
		if err := get(c, generous); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra := dial(t, addr) // the kernel completes the handshake; kvgate does not accept it yet
	var ne net.Error
	if err := get(extra, 3*shortTimeout); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection %d was served past the cap of %d: %v", maxConns+1, maxConns, err)
	}
	held[0].Close()
	_ = extra.SetReadDeadline(time.Now().Add(generous))
	res, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("connection %d not served once another closed: %v", maxConns+1, err)
	}
	res.Body.Close()
}
