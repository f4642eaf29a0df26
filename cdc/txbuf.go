package cdc

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/heal7/shadowcube/schemas"
)

// pending is one decoded change waiting for its transaction's commit.
type pending struct {
	Subject string               `json:"s"`
	Event   *schemas.ChangeEvent `json:"e"`
	size    int64
}

// txBuffer holds the changes of one transaction until its commit. It keeps
// them in memory up to threshold bytes, then moves them all to a temporary
// file, so a transaction of any size uses bounded memory. marks records the
// position of the first change of each (sub)transaction id, so a
// subtransaction abort of a streamed transaction discards exactly its changes
// and everything after them (as PostgreSQL's own apply worker does).
type txBuffer struct {
	dir       string
	threshold int64
	m         *metrics

	mem      []*pending
	memBytes int64

	f       *os.File
	w       *bufio.Writer
	offsets []int64 // start offset of each record once spilled
	pos     int64

	n     int
	marks map[uint32]int
}

func newTxBuffer(dir string, threshold int64, m *metrics) *txBuffer {
	return &txBuffer{dir: dir, threshold: threshold, m: m}
}

func (b *txBuffer) len() int { return b.n }

func (b *txBuffer) spilled() bool { return b.f != nil }

// add appends a change made by (sub)transaction xid.
func (b *txBuffer) add(p *pending, xid uint32) error {
	if b.marks == nil {
		b.marks = map[uint32]int{}
	}
	if _, ok := b.marks[xid]; !ok {
		b.marks[xid] = b.n
	}
	b.n++
	if b.f == nil {
		b.mem = append(b.mem, p)
		b.memBytes += p.size
		if b.memBytes <= b.threshold {
			return nil
		}
		return b.spill()
	}
	return b.write(p)
}

func (b *txBuffer) spill() error {
	f, err := os.CreateTemp(b.dir, "shadowcube-cdc-tx-*.spill")
	if err != nil {
		return fmt.Errorf("spill transaction to %s: %w (set the spill directory to a writable place)", b.dir, err)
	}
	// The file is only ever reached through f: remove its name at once so a
	// crash leaves nothing behind.
	os.Remove(f.Name())
	b.f = f
	b.w = bufio.NewWriterSize(f, 256<<10)
	if b.m != nil {
		b.m.spills.Inc()
	}
	mem := b.mem
	b.mem, b.memBytes = nil, 0
	for _, p := range mem {
		if err := b.write(p); err != nil {
			return err
		}
	}
	return nil
}

func (b *txBuffer) write(p *pending) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("spill change of %s: %w", p.Subject, err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(data)))
	b.offsets = append(b.offsets, b.pos)
	if _, err := b.w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	if _, err := b.w.Write(data); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	b.pos += int64(len(data) + 4)
	if b.m != nil {
		b.m.spillBytes.Add(float64(len(data) + 4))
	}
	return nil
}

// abortSub discards the changes of subtransaction xid and every change
// after its first one.
func (b *txBuffer) abortSub(xid uint32) error {
	k, ok := b.marks[xid]
	if !ok {
		return nil
	}
	for x, i := range b.marks {
		if i >= k {
			delete(b.marks, x)
		}
	}
	b.n = k
	if b.f == nil {
		for _, p := range b.mem[k:] {
			b.memBytes -= p.size
		}
		clear(b.mem[k:])
		b.mem = b.mem[:k]
		return nil
	}
	if err := b.w.Flush(); err != nil {
		return fmt.Errorf("flush spill file: %w", err)
	}
	off := b.offsets[k]
	if err := b.f.Truncate(off); err != nil {
		return fmt.Errorf("truncate spill file: %w", err)
	}
	if _, err := b.f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek spill file: %w", err)
	}
	b.offsets = b.offsets[:k]
	b.pos = off
	b.w.Reset(b.f)
	return nil
}

// each calls fn for every change in order.
func (b *txBuffer) each(fn func(i int, p *pending) error) error {
	if b.f == nil {
		for i, p := range b.mem {
			if err := fn(i, p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := b.w.Flush(); err != nil {
		return fmt.Errorf("flush spill file: %w", err)
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seek spill file: %w", err)
	}
	r := bufio.NewReaderSize(io.LimitReader(b.f, b.pos), 256<<10)
	var hdr [4]byte
	var buf []byte
	for i := 0; i < b.n; i++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("read spill file record %d: %w", i, err)
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("read spill file record %d: %w", i, err)
		}
		p := &pending{}
		if err := json.Unmarshal(buf, p); err != nil {
			return fmt.Errorf("decode spill file record %d: %w", i, err)
		}
		if err := fn(i, p); err != nil {
			return err
		}
	}
	return nil
}

// close releases the buffer and its file. It is idempotent.
func (b *txBuffer) close() {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	b.mem = nil
	b.offsets = nil
}
