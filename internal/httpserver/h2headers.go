package httpserver

import (
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// net/http bounds an HTTP/1.1 request's headers with ReadHeaderTimeout,
// but its HTTP/2 server has no such bound: it reads a header block (a
// HEADERS frame and the CONTINUATION frames that follow it until one
// carries END_HEADERS) for as long as the client keeps it open, and caps
// only its size. A client dribbling one-byte CONTINUATION frames holds the
// connection, and the goroutines serving it, indefinitely. watchHeaderBlocks
// closes a connection whose header block stays open longer than the header
// timeout, by following the frames the server reads from it.

// h2Preface opens every HTTP/2 connection, cleartext or (after ALPN h2)
// TLS.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	h2FrameHeaderLen = 9
	h2FrameHeaders   = 0x1
	h2FrameContinue  = 0x9
	h2FlagEndHeaders = 0x4
)

// headerWatchListener wraps each accepted connection in a headerWatchConn.
type headerWatchListener struct {
	net.Listener
	timeout time.Duration
	logger  *slog.Logger
}

// watchHeaderBlocks returns ln, its connections closed once an HTTP/2
// header block stays open longer than timeout; ln itself when timeout is
// zero.
func watchHeaderBlocks(ln net.Listener, timeout time.Duration, logger *slog.Logger) net.Listener {
	if timeout <= 0 {
		return ln
	}
	return headerWatchListener{Listener: ln, timeout: timeout, logger: logger}
}

func (l headerWatchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	hc := &headerWatchConn{Conn: c, timeout: l.timeout, logger: l.logger}
	hc.timer = time.AfterFunc(l.timeout, hc.cutOff)
	hc.timer.Stop()
	return hc, nil
}

// headerWatchConn follows the bytes read from an HTTP/2 connection frame
// by frame and arms a timer while a header block is open. Connections that
// do not open with the HTTP/2 preface (HTTP/1.1) are only passed through.
// net/http reads a connection from one goroutine at a time, so the parse
// state needs no lock.
type headerWatchConn struct {
	net.Conn
	timeout time.Duration
	logger  *slog.Logger

	passive     bool // not HTTP/2: nothing to follow
	prefaceSeen int  // bytes of the preface read so far
	header      [h2FrameHeaderLen]byte
	headerSeen  int    // bytes of the current frame header read so far
	payloadLeft uint32 // bytes of the current frame's payload still to come
	endsBlock   bool   // the current frame carries END_HEADERS
	blockOpen   bool

	timer  *time.Timer // armed while a header block is open
	closed atomic.Bool
}

// NetConn returns the wrapped connection.
func (c *headerWatchConn) NetConn() net.Conn { return c.Conn }

func (c *headerWatchConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.passive {
		c.follow(p[:n])
	}
	return n, err
}

func (c *headerWatchConn) Close() error {
	c.closed.Store(true)
	c.timer.Stop()
	return c.Conn.Close()
}

// follow advances the frame parse over b, the bytes just read.
func (c *headerWatchConn) follow(b []byte) {
	for len(b) > 0 && !c.passive {
		switch {
		case c.prefaceSeen < len(h2Preface):
			k := min(len(b), len(h2Preface)-c.prefaceSeen)
			if string(b[:k]) != h2Preface[c.prefaceSeen:c.prefaceSeen+k] {
				c.passive = true
				return
			}
			c.prefaceSeen += k
			b = b[k:]
		case c.headerSeen < h2FrameHeaderLen:
			k := copy(c.header[c.headerSeen:], b)
			c.headerSeen += k
			b = b[k:]
			if c.headerSeen == h2FrameHeaderLen {
				c.startFrame()
			}
		default:
			k := min(uint32(len(b)), c.payloadLeft)
			c.payloadLeft -= k
			b = b[k:]
			if c.payloadLeft == 0 {
				c.endFrame()
			}
		}
	}
}

// startFrame reads the frame header just completed.
func (c *headerWatchConn) startFrame() {
	length := uint32(c.header[0])<<16 | uint32(c.header[1])<<8 | uint32(c.header[2])
	typ, flags := c.header[3], c.header[4]
	c.payloadLeft = length
	c.endsBlock = false
	if typ == h2FrameHeaders || (typ == h2FrameContinue && c.blockOpen) {
		c.endsBlock = flags&h2FlagEndHeaders != 0
		c.openBlock()
	}
	if length == 0 {
		c.endFrame()
	}
}

// endFrame finishes the current frame, closing the header block when the
// frame ended it.
func (c *headerWatchConn) endFrame() {
	c.headerSeen = 0
	if c.endsBlock && c.blockOpen {
		c.blockOpen = false
		c.timer.Stop()
	}
	c.endsBlock = false
}

func (c *headerWatchConn) openBlock() {
	if c.blockOpen {
		return
	}
	c.blockOpen = true
	c.timer.Reset(c.timeout)
}

// cutOff closes the connection whose header block outlived the timeout.
func (c *headerWatchConn) cutOff() {
	if c.closed.Swap(true) {
		return
	}
	c.logger.Warn("closing an HTTP/2 connection: a request's headers took longer than the header timeout",
		"remote_addr", c.RemoteAddr().String(), "timeout", c.timeout)
	_ = c.Conn.Close()
}
