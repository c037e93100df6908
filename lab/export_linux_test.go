package lab

// Sock is a TCP socket as the tests see it.
type Sock = sock

// TCP states the tests look for.
const (
	TCPEstablished = tcpEstablished
	TCPFinWait2    = tcpFinWait2
	TCPCloseWait   = tcpCloseWait
	TCPListen      = tcpListen
)

// HTTPResponse is the http service's answer.
func HTTPResponse() string { return httpResponse() }

// HalfBanner is the half service's line.
const HalfBanner = halfBanner

// Sockets lists the TCP sockets in a namespace.
func Sockets(ns string) ([]Sock, error) { return sockets(ns) }

// NSExists reports whether a named namespace exists.
func NSExists(name string) (bool, error) { return nsExists(name) }
