package api

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/pyexec/pyexec"
)

// requireJSON lets through only a body sent as JSON and not encoded.
//
// A content coding (gzip, deflate, br) is refused rather than decoded: a few
// hundred kilobytes of gzip can expand to gigabytes, and the body limit is
// on what arrives, not on what it expands to. The media type is checked
// because a browser sends text/plain and form bodies across origins without
// asking first (no CORS preflight); application/json it does not.
func requireJSON(c *fiber.Ctx) error {
	for _, v := range c.Request().Header.PeekAll(fiber.HeaderContentEncoding) {
		for _, coding := range strings.Split(string(v), ",") {
			if coding = strings.TrimSpace(coding); coding != "" && !strings.EqualFold(coding, "identity") {
				c.Set(fiber.HeaderAcceptEncoding, "identity")
				return pyexec.Errorf(pyexec.CodeUnsupportedMediaType,
					"Content-Encoding %q is not accepted: send the body uncompressed", truncate(coding, 32))
			}
		}
	}
	if types := rawHeaderValues(c.Request().Header.RawHeaders(), fiber.HeaderContentType); len(types) > 1 {
		return pyexec.Errorf(pyexec.CodeUnsupportedMediaType,
			"the request has %d Content-Type headers: send one, application/json", len(types))
	}
	ct := string(c.Request().Header.ContentType())
	if !isJSON(ct) {
		got := "no Content-Type"
		if ct != "" {
			got = fmt.Sprintf("Content-Type %q", truncate(ct, 64))
		}
		return pyexec.Errorf(pyexec.CodeUnsupportedMediaType,
			"the body must be JSON sent with Content-Type: application/json (got %s)", got)
	}
	return c.Next()
}

// oneFraming refuses a request that gives its body's length in more than
// one way: two Content-Length headers that differ (fasthttp reads the body
// by the last one, a proxy in front may have used the first: the classic
// request smuggling). The connection is closed after the answer, since
// where the next request starts is not known.
func oneFraming(c *fiber.Ctx) error {
	lengths := rawHeaderValues(c.Request().Header.RawHeaders(), fiber.HeaderContentLength)
	for _, v := range lengths[min(1, len(lengths)):] {
		if v != lengths[0] {
			c.Context().SetConnectionClose()
			return pyexec.Errorf(pyexec.CodeInvalidRequest, "the request has Content-Length headers that differ")
		}
	}
	return c.Next()
}

// rawHeaderValues lists every value of the header name as the client sent
// it; fasthttp keeps only one of some headers, Content-Length among them.
func rawHeaderValues(raw []byte, name string) []string {
	var out []string
	for _, line := range bytes.Split(raw, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(k)), name) {
			out = append(out, string(bytes.TrimSpace(v)))
		}
	}
	return out
}

// isJSON accepts application/json in any case, with parameters that parse,
// as long as a charset, if named, is UTF-8 (the only one JSON has).
func isJSON(contentType string) bool {
	// A parameter that does not parse is refused too: the charset could
	// not be checked.
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if mediaType != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
