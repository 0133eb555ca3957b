package api

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// maxCodings is how many Content-Encoding layers a body may carry.
const maxCodings = 2

// readBody returns the request body with its Content-Encoding undone (SPEC
// section 1): identity as it is; gzip and deflate inflated through a reader
// that stops at BodyLimit, so memory per call stays about BodyLimit whatever
// the ratio or the chaining; br, zstd and anything else 415. It reads the raw
// body, never Fiber's c.Body(), which inflates without a cap.
func readBody(c *fiber.Ctx) ([]byte, *protocol.Error) {
	body := c.Request().Body()
	header := strings.TrimSpace(string(c.Request().Header.Peek(fiber.HeaderContentEncoding)))
	codings := strings.Split(header, ",")
	if len(codings) > maxCodings {
		return nil, unsupportedEncoding(fmt.Sprintf("at most %d content codings may be chained", maxCodings))
	}
	// Codings are listed in the order they were applied: undo the last first.
	for i := len(codings) - 1; i >= 0; i-- {
		coding := strings.ToLower(strings.TrimSpace(codings[i]))
		if coding == "" || coding == "identity" {
			continue
		}
		r, err := inflater(coding, body)
		if errors.Is(err, errUnsupported) {
			return nil, unsupportedEncoding(fmt.Sprintf("Content-Encoding %q is not supported", coding))
		}
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(r, BodyLimit+1))
		}
		if err != nil {
			return nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "Content-Encoding",
				fmt.Sprintf("the body is not valid %s data: %v", coding, err))
		}
		if len(body) > BodyLimit {
			return nil, tooLarge()
		}
	}
	if len(body) > BodyLimit {
		return nil, tooLarge()
	}
	return body, nil
}

var errUnsupported = errors.New("unsupported coding")

// inflater reads the decoded form of data. HTTP's deflate is the zlib format;
// some clients send raw deflate instead, which is read as such.
func inflater(coding string, data []byte) (io.Reader, error) {
	switch coding {
	case "gzip", "x-gzip":
		return gzip.NewReader(bytes.NewReader(data))
	case "deflate":
		r, err := zlib.NewReader(bytes.NewReader(data))
		if errors.Is(err, zlib.ErrHeader) {
			return flate.NewReader(bytes.NewReader(data)), nil
		}
		return r, err
	}
	return nil, errUnsupported
}

func unsupportedEncoding(msg string) *protocol.Error {
	return protocol.NewError(http.StatusUnsupportedMediaType, protocol.CodeUnsupportedEncoding, "Content-Encoding",
		msg+"; send the body as identity, gzip or deflate")
}
