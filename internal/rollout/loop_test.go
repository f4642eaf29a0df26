package rollout

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// load writes on both sides until stopped: inserts, and every fifth write an
// update of one of the side's own rows. It counts the changes that
// committed; a write that fails (its database is down) is not counted and
// the writer reconnects.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	changes map[string]int // side -> committed changes
	updates map[string]int // side -> committed updates
}

func (w *world) startLoad(pause time.Duration) *load {
	l := &load{stop: make(chan struct{}), changes: map[string]int{}, updates: map[string]int{}}
	for _, side := range []string{"legacy", "cube"} {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			url := w.legacyURL
			if side == "cube" {
				url = w.cubeURL
			}
			var c *pgx.Conn
			defer func() {
				if c != nil {
					c.Close(context.Background())
				}
			}()
			var own []int64
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
				}
				if c == nil || c.IsClosed() {
					var err error
					if c, err = pgx.Connect(w.ctx, url); err != nil {
						c = nil
						continue
					}
				}
				update := i%5 == 4 && len(own) > 0
				var err error
				if update {
					id := own[i%len(own)]
					if side == "legacy" {
						_, err = c.Exec(w.ctx, `UPDATE saju_records SET interpretation = $2 WHERE id = $1`, id, fmt.Sprintf("legacy update %d", i))
					} else {
						_, err = c.Exec(w.ctx, `UPDATE cube.saju_charts SET interpretation = $2 WHERE id = $1`, id, fmt.Sprintf("cube update %d", i))
					}
				} else {
					var id int64
					if side == "legacy" {
						id, err = w.legacyInsert(c, fmt.Sprintf("lu-%d", i), i)
					} else {
						id, err = w.cubeInsert(c, fmt.Sprintf("cu-%d", i), i)
					}
					if err == nil {
						own = append(own, id)
					}
				}
				if err != nil {
					if w.ctx.Err() == nil && side == "legacy" {
						w.t.Errorf("legacy write: %v", err)
						return
					}
					c.Close(context.Background())
					c = nil
					continue
				}
				l.mu.Lock()
				l.changes[side]++
				if update {
					l.updates[side]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) counts() (legacy, cube int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changes["legacy"], l.changes["cube"]
}

func (l *load) end() (legacy, cube int) {
	close(l.stop)
	l.wg.Wait()
	return l.counts()
}

// TestTwoWayNoLoopUnderRestarts writes on both sides at once while the
// reverse cdc and the forward sync are killed with SIGKILL and restarted,
// then proves from the CDC stream that every change was published once by
// its own side's slot and never by the other (no loop), and that both
// directions reconcile clean.
func TestTwoWayNoLoopUnderRestarts(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.startAll()
	l := w.startLoad(10 * time.Millisecond)
	progress := func(what string) {
		t.Helper()
		lb, cb := l.counts()
		w.waitFor(60*time.Second, what, func() bool {
			la, ca := l.counts()
			return la >= lb+20 && ca >= cb+20
		})
	}
	progress("load under way")
	for _, name := range []string{cdcRev, syncFwd} {
		w.procs[name].kill9()
		lb, cb := l.counts()
		progress(name + " down while both sides write")
		w.start(name)
		la, ca := l.counts()
		t.Logf("%s killed: %d legacy and %d cube changes made while it was down", name, la-lb, ca-cb)
	}
	progress("load after the restarts")
	ln, cn := l.end()
	w.converged(int64(ln-l.updates["legacy"]+cn-l.updates["cube"]), 2*time.Minute)
	// updates carry no new rows: wait for the last ones through the watermarks
	w.waitFor(60*time.Second, "last updates applied", func() bool {
		return w.reconcileClean()
	})
	w.checkNoLoop(ln, cn)
	w.reconcileBoth()
}
