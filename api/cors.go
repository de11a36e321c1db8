package api

import (
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
)

// cors allows the pages of the configured origins to call the API from a
// browser: GET and POST, with the headers the API reads, and X-Request-ID
// readable in the answer. Credentials (cookies) are not allowed: the API
// key travels in Authorization, which a page must set itself.
func (s *server) cors() fiber.Handler {
	allowed := make(map[string]bool, len(s.cfg.CORSOrigins))
	for _, o := range s.cfg.CORSOrigins {
		allowed[strings.ToLower(o)] = true
	}
	return cors.New(cors.Config{
		// A request from any other origin, or with none, passes untouched:
		// no Access-Control-* header at all (the middleware alone would
		// still send the allowed methods and headers to anyone).
		Next: func(c *fiber.Ctx) bool {
			c.Vary(fiber.HeaderOrigin)
			return !allowed[strings.ToLower(c.Get(fiber.HeaderOrigin))]
		},
		AllowOrigins: strings.Join(s.cfg.CORSOrigins, ","),
		AllowMethods: strings.Join([]string{fiber.MethodGet, fiber.MethodPost}, ","),
		// With the MCP transport's headers: MCP-Protocol-Version, which a
		// client sends on every request after initialize, and the method
		// and tool name that clients of later protocol versions repeat.
		AllowHeaders: strings.Join([]string{fiber.HeaderContentType, fiber.HeaderAuthorization, "X-Request-ID",
			"Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name"}, ","),
		ExposeHeaders: "X-Request-ID",
	})
}
