package httpserver

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/testutil"
)

func init() {
	// Certificate reload tests see a change quickly.
	certCheckInterval = 10 * time.Millisecond
}

// serverFiles writes a server certificate with serial, its key, and the
// CA that signed it to a temporary directory.
func serverFiles(t *testing.T, serial int64) (*testutil.TestCA, TLSFiles) {
	t.Helper()
	ca := testutil.NewTestCA(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.Issue(t, serial, false)
	return ca, TLSFiles{
		CertFile:     testutil.WriteFile(t, dir, "cert.pem", certPEM),
		KeyFile:      testutil.WriteFile(t, dir, "key.pem", keyPEM),
		ClientCAFile: testutil.WriteFile(t, dir, "ca.pem", ca.PEM),
	}
}

// protoHandler answers with the request's protocol, whether it came over
// TLS, and the client certificate's serial.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	serial := "none"
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		serial = r.TLS.PeerCertificates[0].SerialNumber.String()
	}
	fmt.Fprintf(w, "%s tls=%v client=%s", r.Proto, r.TLS != nil, serial)
})

func tlsClient(t *testing.T, clientTLS *tls.Config, h2 bool) *http.Client {
	p := new(http.Protocols)
	if h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr := &http.Transport{TLSClientConfig: clientTLS, Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestTLSProtocolsAndClientCertificates(t *testing.T) {
	t.Parallel()
	ca, files := serverFiles(t, 1)
	mutual := files
	files.ClientCAFile = ""
	clientCert := ca.ClientCertificate(t)
	cases := []struct {
		name  string
		files TLSFiles
		h2    bool
		cert  bool
		want  string // the answer; empty when the client must be refused
	}{
		{name: "h2 by ALPN", files: files, h2: true, want: "HTTP/2.0 tls=true client=none"},
		{name: "http/1.1", files: files, want: "HTTP/1.1 tls=true client=none"},
		{name: "mtls h2", files: mutual, h2: true, cert: true, want: "HTTP/2.0 tls=true client=100"},
		{name: "mtls http/1.1", files: mutual, cert: true, want: "HTTP/1.1 tls=true client=100"},
		{name: "mtls without certificate", files: mutual, h2: true},
		{name: "mtls without certificate http/1.1", files: mutual},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := LoadTLS(tc.files, nil)
			if err != nil {
				t.Fatal(err)
			}
			addr := serveWith(t, protoHandler, quickConfig(), WithTLS(cfg))
			clientTLS := &tls.Config{RootCAs: ca.Pool()}
			if tc.cert {
				clientTLS.Certificates = []tls.Certificate{clientCert}
			}
			res, err := tlsClient(t, clientTLS, tc.h2).Get("https://" + addr)
			if tc.want == "" {
				// TLS 1.3 clients finish their side of the handshake
				// before the server checks them: the refusal arrives as
				// an alert or a closed connection.
				if err == nil {
					res.Body.Close()
					t.Fatal("served a client without a certificate")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(body) != tc.want {
				t.Errorf("answer %q, want %q", body, tc.want)
			}
		})
	}
}

// TestTLSCertificateReload replaces the pair on disk and checks that new
// connections get the new certificate, and that a broken pair keeps the
// previous one.
func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	ca, files := serverFiles(t, 1)
	files.ClientCAFile = ""
	var logs testutil.LockedBuffer
	cfg, err := LoadTLS(files, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveWith(t, protoHandler, quickConfig(), WithTLS(cfg))
	serial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(generous); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen within %v; logs:\n%s", what, generous, logs.String())
			}
		}
	}
	if got := serial(); got != "1" {
		t.Fatalf("serial %s, want 1", got)
	}
	certPEM, keyPEM := ca.Issue(t, 2, false)
	dir := files.CertFile[:strings.LastIndex(files.CertFile, "/")]
	testutil.WriteFile(t, dir, "key.pem", keyPEM)
	testutil.WriteFile(t, dir, "cert.pem", certPEM)
	waitFor("the new certificate", func() bool { return serial() == "2" })

	testutil.WriteFile(t, dir, "cert.pem", []byte("not a certificate"))
	// Handshakes look at the files: dial until one has seen the broken pair.
	waitFor("the failed reload logged", func() bool { serial(); return strings.Contains(logs.String(), "reload failed") })
	if got := serial(); got != "2" {
		t.Fatalf("after a broken pair: serial %s, want the previous 2", got)
	}
}

func TestTLSFilesValidate(t *testing.T) {
	t.Parallel()
	for _, f := range []TLSFiles{{CertFile: "c"}, {KeyFile: "k"}, {ClientCAFile: "ca"}} {
		if f.Validate() == nil {
			t.Errorf("%+v accepted", f)
		}
		if _, err := LoadTLS(f, nil); err == nil {
			t.Errorf("LoadTLS(%+v) succeeded", f)
		}
	}
}
