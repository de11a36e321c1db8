package api

import (
	"net"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/pyexec/pyexec"
)

// loopbackHost refuses a request that reached the service on a loopback
// address but names another host in its Host header. That is what a web
// page sends after rebinding its own name to 127.0.0.1 (DNS rebinding): to
// the visitor's browser the page and the service are then one origin, so
// neither CORS nor the media-type check stops it, and a service without a
// key on a developer's machine would run its scripts. The MCP SDK makes the
// same check on /mcp; making it here holds /execute to it too and gives
// both the service's own answer.
func loopbackHost(c *fiber.Ctx) error {
	local, ok := c.Context().LocalAddr().(*net.TCPAddr)
	if !ok || !local.IP.IsLoopback() || loopbackName(string(c.Request().Host())) {
		return c.Next()
	}
	return pyexec.Errorf(pyexec.CodeForbidden,
		"this request reached a loopback address but names another host: call it as localhost, 127.0.0.1 or [::1]")
}

// loopbackName reports whether a Host header, port or not, names the local
// machine: localhost or a loopback address.
func loopbackName(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
