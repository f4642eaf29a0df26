package publisher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultSpillMaxBytes bounds the spill file when SpillConfig.MaxBytes is 0.
const DefaultSpillMaxBytes = 256 << 20

// SpillConfig configures the optional on-disk spill: events NATS did not
// take are appended to Dir/spill.log (at most MaxBytes; beyond that they are
// dropped with reason spill_full) and re-published, with their original
// Nats-Msg-Id, once NATS is connected again. The file survives restarts.
type SpillConfig struct {
	Dir      string
	MaxBytes int64
}

// spill is an append-only file of records [len subject][subject][len id][id][len data][data],
// each length a big-endian uint32. Records before readOff are published.
type spill struct {
	mu      sync.Mutex
	f       *os.File
	size    int64
	readOff int64
	max     int64
	log     *slog.Logger
	written atomic.Int64
	pending atomic.Int64 // size - readOff, read without the lock
}

func openSpill(cfg SpillConfig, log *slog.Logger) (*spill, error) {
	// The directory and the file must be what they say: a symlink planted
	// there could make the tap write captured traffic anywhere it may write.
	if fi, err := os.Lstat(cfg.Dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("spill directory %s is a symbolic link: give the real directory (SHADOWCUBE_TAP_SPILL_DIR)", cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spill directory %s: %w", cfg.Dir, err)
	}
	if fi, err := os.Lstat(cfg.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("spill directory %s: not a directory", cfg.Dir)
	}
	path := filepath.Join(cfg.Dir, "spill.log")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("spill file %s is a symbolic link: remove it", path)
		}
		return nil, fmt.Errorf("spill file %s: %w", path, err)
	}
	// One tap per spill directory: two would interleave records and
	// re-publish each other's events.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spill directory %s is in use by another tap (its spill.log is locked): give each tap its own SHADOWCUBE_TAP_SPILL_DIR", cfg.Dir)
		}
		return nil, fmt.Errorf("lock spill file %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spill file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("spill file %s is not a regular file", path)
	}
	s := &spill{f: f, size: st.Size(), max: cfg.MaxBytes, log: log}
	if s.max <= 0 {
		s.max = DefaultSpillMaxBytes
	}
	s.pending.Store(s.size)
	if s.size > 0 {
		log.Info("spill file holds events from an earlier run; they will be re-published", "path", path, "bytes", s.size)
	}
	return s, nil
}

func (s *spill) empty() bool { return s == nil || s.pending.Load() == 0 } // nil: no spill (yet)

// write appends msg; false when the file is full or cannot be written.
func (s *spill) write(msg *nats.Msg) bool {
	id := msg.Header.Get(jetstream.MsgIDHeader)
	rec := make([]byte, 0, 12+len(msg.Subject)+len(id)+len(msg.Data))
	for _, part := range [][]byte{[]byte(msg.Subject), []byte(id), msg.Data} {
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(part)))
		rec = append(rec, part...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.size+int64(len(rec)) > s.max {
		return false
	}
	if _, err := s.f.WriteAt(rec, s.size); err != nil {
		s.log.Error("write spill file", "err", err)
		return false
	}
	s.size += int64(len(rec))
	s.pending.Store(s.size - s.readOff)
	s.written.Add(1)
	return true
}

// replay publishes spilled records in order until the file is exhausted, a
// publish fails, or ctx ends. It returns how many were published.
func (s *spill) replay(ctx context.Context, publish func(context.Context, *nats.Msg) error) (int, error) {
	n := 0
	for ctx.Err() == nil {
		msg, next, err := s.next()
		if err != nil {
			return n, err
		}
		if msg == nil {
			return n, nil
		}
		if err := publish(ctx, msg); err != nil {
			return n, fmt.Errorf("re-publish spilled event: %w", err)
		}
		n++
		s.advance(next)
	}
	return n, ctx.Err()
}

// next reads the record at readOff; nil when none.
func (s *spill) next() (*nats.Msg, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.readOff >= s.size {
		return nil, 0, nil
	}
	off := s.readOff
	var parts [3][]byte
	for i := range parts {
		var l [4]byte
		if _, err := s.f.ReadAt(l[:], off); err != nil {
			return nil, 0, s.corrupt(off, err)
		}
		n := int64(binary.BigEndian.Uint32(l[:]))
		if off+4+n > s.size {
			return nil, 0, s.corrupt(off, io.ErrUnexpectedEOF)
		}
		parts[i] = make([]byte, n)
		if _, err := s.f.ReadAt(parts[i], off+4); err != nil {
			return nil, 0, s.corrupt(off, err)
		}
		off += 4 + n
	}
	msg := &nats.Msg{Subject: string(parts[0]), Data: parts[2], Header: nats.Header{}}
	if len(parts[1]) > 0 {
		msg.Header.Set(jetstream.MsgIDHeader, string(parts[1]))
	}
	return msg, off, nil
}

// corrupt drops a torn tail (a crash mid-write) so replay can go on.
func (s *spill) corrupt(off int64, err error) error {
	s.log.Warn("spill file has a torn record; dropping the rest", "offset", off, "err", err)
	s.size = off
	_ = s.f.Truncate(off)
	s.pending.Store(s.size - s.readOff)
	return nil
}

func (s *spill) advance(next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readOff = next
	if s.readOff >= s.size && s.f != nil {
		if err := s.f.Truncate(0); err == nil {
			s.size, s.readOff = 0, 0
		}
	}
	s.pending.Store(s.size - s.readOff)
}

func (s *spill) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		if err := s.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			s.log.Warn("close spill file", "err", err)
		}
		s.f = nil
	}
}
