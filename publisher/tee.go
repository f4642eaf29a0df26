package publisher

import (
	"io"
	"sync"
)

// capBuf keeps the first max bytes written to it and remembers whether more
// came. seal hands the bytes over; later writes are ignored, so a transport
// still sending a request body cannot race with the event being published.
type capBuf struct {
	mu        sync.Mutex
	b         []byte
	max       int64
	truncated bool
	sealed    bool
}

func (c *capBuf) write(p []byte) {
	if len(p) == 0 {
		return
	}
	c.mu.Lock()
	if !c.sealed {
		room := c.max - int64(len(c.b))
		if int64(len(p)) > room {
			c.truncated = true
			p = p[:room]
		}
		if c.b == nil && len(p) > 0 {
			c.b = make([]byte, 0, min(c.max, max(int64(len(p)), 512)))
		}
		c.b = append(c.b, p...)
	}
	c.mu.Unlock()
}

func (c *capBuf) seal() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sealed = true
	return c.b, c.truncated
}

// teeBody copies what its reader reads into a capBuf.
type teeBody struct {
	rc  io.ReadCloser
	buf *capBuf
	eof bool
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.buf.write(p[:n])
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

func (t *teeBody) Close() error { return t.rc.Close() }
