package sniff

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
	"testing"
)

// feedAll feeds data to a chunked body in pieces cut at the given points
// and returns what it kept and whether it ended.
func feedAll(data []byte, cuts []int) (body, error) {
	b := newBody(-1, true, false, true, 1<<20)
	var pending []byte
	prev := 0
	for _, c := range append(cuts, len(data)) {
		if c < prev || c > len(data) {
			continue
		}
		pending = append(pending, data[prev:c]...)
		prev = c
		n, done, err := b.feed(pending)
		if err != nil {
			return b, err
		}
		pending = pending[n:]
		if done {
			b.left = -1 // marks completion for the caller
			return b, nil
		}
	}
	return b, nil
}

// FuzzChunkedSplit: the chunked decoder gives the same body whatever the
// segment boundaries, and the same body net/http's decoder gives.
func FuzzChunkedSplit(f *testing.F) {
	for _, s := range []string{
		"7\r\npart 0\n\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nX-Correlation-Id: c1\r\n\r\n",
		"A\r\n0123456789\r\n1\r\nz\r\n0\r\n\r\n",
		"zz\r\n",
	} {
		f.Add([]byte(s), uint16(1), uint16(5))
	}
	f.Fuzz(func(t *testing.T, data []byte, c1, c2 uint16) {
		whole, errWhole := feedAll(data, nil)
		split, errSplit := feedAll(data, []int{int(c1) % (len(data) + 1), int(c2) % (len(data) + 1)})
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v, split: %v", errWhole, errSplit)
		}
		if errWhole != nil {
			return
		}
		if !bytes.Equal(whole.buf, split.buf) || (whole.left == -1) != (split.left == -1) {
			t.Fatalf("whole %q (done %v), split %q (done %v)", whole.buf, whole.left == -1, split.buf, split.left == -1)
		}
		if whole.left != -1 {
			return
		}
		ref, err := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(data))))
		if err == nil && !bytes.Equal(ref, whole.buf) {
			t.Fatalf("net/http decodes %q, we %q", ref, whole.buf)
		}
	})
}

// TestBodyCap: a body longer than the cap is kept up to it and flagged.
func TestBodyCap(t *testing.T) {
	b := newBody(10, false, false, true, 4)
	n, done, err := b.feed([]byte("0123456789rest"))
	if n != 10 || !done || err != nil || string(b.buf) != "0123" || !b.truncated {
		t.Fatalf("n %d done %v err %v kept %q truncated %v", n, done, err, b.buf, b.truncated)
	}
}
