package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestIsLoopbackHost(t *testing.T) {
	t.Parallel()
	cases := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LocalHost.:8080", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8080", true},
		{"127.9.8.7:1", true},
		{"[::1]", true},
		{"[::1]:8080", true},
		{"[::ffff:127.0.0.1]:80", true},
		{"", false},
		{"rebind.example:8080", false},
		{"localhost.example.com", false},
		{"127.0.0.1.nip.io:8080", false},
		{"10.0.0.1:8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"[fe80::1%25lo]:80", false},
	}
	for _, c := range cases {
		if got := IsLoopbackHost(c.host); got != c.want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

// reportedAddrListener is a loopback listener that reports another bound
// address, to serve as a server bound to every interface would without
// listening on one.
type reportedAddrListener struct {
	net.Listener
	addr net.Addr
}

func (l reportedAddrListener) Addr() net.Addr { return l.addr }

// TestLoopbackHostCheck sends real requests, over HTTP/1.1 and h2c, with
// the Host header a DNS-rebinding page would send and with loopback names,
// to a server bound to loopback and to one bound to every interface.
func TestLoopbackHostCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		host       string // sent as Host (:authority on HTTP/2)
		anyAddress bool   // the server reports 0.0.0.0 as its address
		wantStatus int
	}{
		{"rebound name", "rebind.example:%PORT%", false, http.StatusMisdirectedRequest},
		{"rebound name without port", "rebind.example", false, http.StatusMisdirectedRequest},
		{"private address", "192.168.1.10:%PORT%", false, http.StatusMisdirectedRequest},
		{"localhost", "localhost:%PORT%", false, http.StatusOK},
		{"127.0.0.1", "127.0.0.1:%PORT%", false, http.StatusOK},
		{"other loopback address", "127.0.0.2", false, http.StatusOK},
		{"IPv6 loopback", "[::1]:%PORT%", false, http.StatusOK},
		{"any name when bound to every interface", "rebind.example:%PORT%", true, http.StatusOK},
	}
	clients := map[string]func(*testing.T) *http.Client{
		"http1": func(t *testing.T) *http.Client {
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			return &http.Client{Transport: tr}
		},
		"h2c": h2cClient,
	}
	for _, c := range cases {
		for proto, newClient := range clients {
			t.Run(c.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				var served atomic.Int64
				url, port := startHostServer(t, c.anyAddress, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					served.Add(1)
					_, _ = io.WriteString(w, "served")
				}))
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = strings.ReplaceAll(c.host, "%PORT%", port)
				res, err := newClient(t).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				_, _ = io.Copy(io.Discard, res.Body)
				if res.StatusCode != c.wantStatus {
					t.Errorf("Host %q: status %d, want %d", req.Host, res.StatusCode, c.wantStatus)
				}
				wantServed := int64(0)
				if c.wantStatus == http.StatusOK {
					wantServed = 1
				}
				if got := served.Load(); got != wantServed {
					t.Errorf("handler ran %d times, want %d", got, wantServed)
				}
			})
		}
	}
}

// startHostServer runs handler on a loopback listener, reporting 0.0.0.0
// as its address when anyAddress is set, and returns its URL and port.
func startHostServer(t *testing.T, anyAddress bool, handler http.Handler) (url, port string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	if anyAddress {
		ln = reportedAddrListener{Listener: ln, addr: &net.TCPAddr{IP: net.IPv4zero, Port: tcp.Port}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Run(ctx, nil, ln, handler)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + tcp.String(), strconv.Itoa(tcp.Port)
}
