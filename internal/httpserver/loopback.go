package httpserver

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// loopbackHostsOnly guards a server bound to a loopback address against
// DNS rebinding: a web page on a name its attacker controls, which then
// resolves to 127.0.0.1, is same-origin with that name, so the browser
// sends it to the local server without any CORS check. Its requests
// still carry the attacker's name in Host, and this layer refuses every
// request whose Host is not a loopback name (localhost, 127.0.0.0/8,
// [::1], with any port) before the handler sees it.
//
// It answers 421 Misdirected Request: the server does not serve that
// name, whoever asks (no credential would change the answer, as 403
// would suggest), and RFC 9110 gives 421 to exactly that case. A server
// bound to any other address serves whatever names point at it, and
// next is returned unchanged.
func loopbackHostsOnly(addr net.Addr, logger *slog.Logger, next http.Handler) http.Handler {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsLoopbackHost(r.Host) {
			logger.Warn("request refused: its Host is not a loopback name, and this server is bound to loopback (DNS rebinding?)",
				"host", truncate(r.Host, 100), "remote", r.RemoteAddr, "path", truncate(r.URL.Path, 200))
			http.Error(w, "this server answers only to loopback host names (localhost, 127.0.0.1, [::1])",
				http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// IsLoopbackHost reports whether host, a Host header's value with or
// without a port, names the loopback interface: localhost, an address in
// 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(name)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// truncate bounds what a client chose before it goes into a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
