package httpboot

import (
	"io"
	"net/http"
	"os"
)

// countingWriter counts the body bytes and remembers the status. It keeps
// io.ReaderFrom so http.ServeContent's copy of an *os.File still reaches the
// connection's sendfile path.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	var (
		n   int64
		err error
	)
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

type writerOnly struct{ io.Writer }

// serveFile sends f with http.ServeContent: Range, If-Range,
// If-Modified-Since, If-None-Match (when etag is set), HEAD, and a correct
// Content-Length. The type is always application/octet-stream (no
// sniffing).
func serveFile(w http.ResponseWriter, r *http.Request, f *os.File, etag, cacheControl string) *countingWriter {
	cw := &countingWriter{ResponseWriter: w}
	fi, err := f.Stat()
	if err != nil {
		bare(w, http.StatusInternalServerError)
		cw.status = http.StatusInternalServerError
		return cw
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", cacheControl)
	if etag != "" {
		hd.Set("ETag", etag)
	}
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	return cw
}
