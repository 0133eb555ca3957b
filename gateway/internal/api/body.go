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
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// maxCodings is how many Content-Encoding layers a body may carry.
const maxCodings = 2

// drainLimit is how much of a body over the limit is read and thrown away
// after its 413, so that the client, still sending, reads the answer instead
// of a reset connection. Past it the connection is simply closed.
const drainLimit = 1 << 20

// The HTTP server streams request bodies (Config.StreamRequestBody): it
// buffers at most BodyLimit bytes before the handler runs, and the handler
// reads the rest, if any, itself. A body is held in memory only up to
// BodyLimit, as sent and again once inflated, whatever a client sends.

// readRaw returns the body as sent, at most BodyLimit bytes (413 beyond; SPEC
// section 1). Its bytes are the call's own.
func readRaw(c *fiber.Ctx) ([]byte, *protocol.Error) {
	req := c.Request()
	stream := req.BodyStream()
	if stream == nil {
		if body := req.Body(); len(body) <= BodyLimit {
			return body, nil
		}
		return nil, tooLarge()
	}
	size := req.Header.ContentLength()
	buf := make([]byte, 0, min(max(size, 512), BodyLimit)+1)
	body, err := readAtMost(stream, buf, BodyLimit)
	switch {
	case errors.Is(err, errTooLarge):
		// discardBody reads the rest off the connection after the answer.
		return nil, tooLarge()
	case err != nil:
		return nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "",
			"the body could not be read: "+err.Error())
	}
	return body, nil
}

var errTooLarge = errors.New("over the limit")

// discardBody reads what is left of a streamed body off the connection, up
// to drainLimit, once the call is answered: after a 401 or a 413 the client
// is often still sending, and must read the answer, not a reset. A body
// left unread would also be parsed as the next request on the connection,
// so when anything may be left the connection is closed.
func discardBody(c *fiber.Ctx) {
	stream := c.Request().BodyStream()
	if stream == nil {
		return
	}
	// A client that stops sending must not hold the call, nor a shutdown
	// that waits for it: the rest has drainTime to arrive.
	if conn := c.Context().Conn(); conn != nil {
		if err := conn.SetReadDeadline(time.Now().Add(drainTime)); err == nil {
			defer conn.SetReadDeadline(time.Time{}) // the server sets its own before the next request
		}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(stream, drainLimit))
	if err != nil || n == drainLimit {
		c.Context().SetConnectionClose()
	}
}

// drainTime bounds how long discardBody waits for the rest of a body.
const drainTime = time.Second

// readAtMost appends r to buf until EOF, or fails with errTooLarge as soon as
// more than limit bytes came.
func readAtMost(r io.Reader, buf []byte, limit int) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: int64(limit) + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// decodeBody undoes the Content-Encoding of body (SPEC section 1): identity
// as it is; gzip and deflate inflated through a reader that stops at
// BodyLimit, so memory per call stays about BodyLimit whatever the ratio or
// the chaining; br, zstd and anything else 415. Never Fiber's c.Body(), which
// inflates without a cap.
func decodeBody(c *fiber.Ctx, body []byte) ([]byte, *protocol.Error) {
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
		var err error
		body, err = inflate(coding, body)
		switch {
		case errors.Is(err, errUnsupported):
			return nil, unsupportedEncoding(fmt.Sprintf("Content-Encoding %q is not supported", coding))
		case errors.Is(err, errTooLarge):
			return nil, tooLarge()
		case err != nil:
			return nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "Content-Encoding",
				fmt.Sprintf("the body is not valid %s data: %v", coding, err))
		}
	}
	return body, nil
}

var errUnsupported = errors.New("unsupported coding")

// gzipReaders keeps inflaters for reuse: each holds a 32 KiB window.
var gzipReaders sync.Pool

// inflate returns the decoded form of data, at most BodyLimit bytes. HTTP's
// deflate is the zlib format; some clients send raw deflate instead, which
// is read as such.
func inflate(coding string, data []byte) ([]byte, error) {
	src := bytes.NewReader(data)
	out := make([]byte, 0, min(4*len(data), BodyLimit)+1)
	switch coding {
	case "gzip", "x-gzip":
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(src)
		} else {
			err = zr.Reset(src)
		}
		if err != nil {
			return nil, err
		}
		defer gzipReaders.Put(zr)
		return readAtMost(zr, out, BodyLimit)
	case "deflate":
		zr, err := zlib.NewReader(src)
		if errors.Is(err, zlib.ErrHeader) {
			fr := flate.NewReader(bytes.NewReader(data))
			defer fr.Close()
			return readAtMost(fr, out, BodyLimit)
		}
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return readAtMost(zr, out, BodyLimit)
	}
	return nil, errUnsupported
}

func unsupportedEncoding(msg string) *protocol.Error {
	return protocol.NewError(http.StatusUnsupportedMediaType, protocol.CodeUnsupportedEncoding, "Content-Encoding",
		msg+"; send the body as identity, gzip or deflate")
}
