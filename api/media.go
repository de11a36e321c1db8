package api

import (
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

// isJSON accepts application/json in any case, with parameters, as long as
// a charset, if named, is UTF-8 (the only one JSON has).
func isJSON(contentType string) bool {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil && err != mime.ErrInvalidMediaParameter {
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
