package kvctl

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/spf13/pflag"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// DefaultAddr is where kvctl finds kvgate unless told otherwise.
const DefaultAddr = "http://127.0.0.1:8080"

// connOptions are the flags that say how to reach kvgate.
type connOptions struct {
	addr, protocol, token string
	ca, cert, key         string
	insecure              bool
}

func (o *connOptions) register(fs *pflag.FlagSet, env func(string) string) {
	or := func(name, def string) string {
		if v := env(name); v != "" {
			return v
		}
		return def
	}
	insecure, _ := strconv.ParseBool(env("KVCTL_INSECURE_SKIP_VERIFY"))
	fs.StringVar(&o.addr, "addr", or("KVCTL_ADDR", DefaultAddr), "kvgate's base URL [$KVCTL_ADDR]")
	fs.StringVar(&o.protocol, "protocol", or("KVCTL_PROTOCOL", "connect"), "connect, grpc or grpcweb [$KVCTL_PROTOCOL]")
	fs.StringVar(&o.token, "token", env("KVCTL_TOKEN"), "bearer token sent as Authorization [$KVCTL_TOKEN]")
	fs.StringVar(&o.ca, "ca", env("KVCTL_CA"), "PEM file of CAs that verify kvgate's certificate [$KVCTL_CA]")
	fs.StringVar(&o.cert, "cert", env("KVCTL_CERT"), "PEM client certificate for mutual TLS [$KVCTL_CERT]")
	fs.StringVar(&o.key, "key", env("KVCTL_KEY"), "PEM private key of --cert [$KVCTL_KEY]")
	fs.BoolVar(&o.insecure, "insecure-skip-verify", insecure, "do not verify kvgate's certificate [$KVCTL_INSECURE_SKIP_VERIFY]")
}

// client builds the generated client these options describe.
func (o *connOptions) client() (kvv1connect.KVStoreServiceClient, error) {
	u, err := url.Parse(o.addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--addr %q: want a URL such as %s", o.addr, DefaultAddr)
	}
	var opts []connecthttp.Option
	switch o.protocol {
	case "connect":
	case "grpc":
		opts = append(opts, connecthttp.WithGRPC())
	case "grpcweb":
		opts = append(opts, connecthttp.WithGRPCWeb())
	default:
		return nil, usagef("--protocol %q: want connect, grpc or grpcweb", o.protocol)
	}
	if (o.cert == "") != (o.key == "") {
		return nil, usagef("--cert and --key go together")
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, Protocols: new(http.Protocols)}
	switch {
	case u.Scheme == "https":
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetHTTP2(true)
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	case o.protocol == "grpc":
		// gRPC needs HTTP/2; on a cleartext URL that is h2c with prior
		// knowledge.
		tr.Protocols.SetUnencryptedHTTP2(true)
	default:
		tr.Protocols.SetHTTP1(true)
	}
	var rt http.RoundTripper = tr
	if o.token != "" {
		rt = bearer{token: o.token, next: tr}
	}
	hc := &http.Client{Transport: rt}
	return kvv1connect.NewKVStoreServiceClient(connect.NewClient(connecthttp.NewTransport(hc, o.addr, opts...))), nil
}

func (o *connOptions) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure} //nolint:gosec // the user asked for it
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, localError{fmt.Errorf("--ca: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, localError{fmt.Errorf("--ca %s: no PEM certificates", o.ca)}
		}
		cfg.RootCAs = pool
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, localError{fmt.Errorf("--cert/--key: %w", err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// bearer adds the token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
