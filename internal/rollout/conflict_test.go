package rollout

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrapeConflicts sums shadowcube_sync_conflicts_total by winner from a
// process's metrics endpoint.
func scrapeConflicts(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	re := regexp.MustCompile(`(?m)^shadowcube_sync_conflicts_total\{[^}]*winner="([a-z]+)"[^}]*\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] += v
	}
	return out
}

// TestConflictPolicies writes the same rows on both sides while both syncs
// are down (so each write is inside the other's sync lag), then starts the
// syncs: under each policy both databases end with the winner's version,
// every conflict is in shadowcube.sync_conflicts of the database where it
// was resolved, with both versions and the winner, and in the metric.
func TestConflictPolicies(t *testing.T) {
	pg := testenv.StartCluster(t, pgcluster.Options{Settings: map[string]string{"track_commit_timestamp": "on"}})
	const n = 6
	for _, policy := range []string{consumers.ConflictLegacyWins, consumers.ConflictCubeWins, consumers.ConflictNewest} {
		t.Run(policy, func(t *testing.T) {
			w := newWorld(t, worldOpts{legacy: pg, fwdPolicy: policy, revPolicy: policy})
			w.metricsAddr = map[string]string{syncFwd: freeAddr(t), syncRev: freeAddr(t)}
			w.startAll()
			ids := make([]int64, n)
			for i := range ids {
				var err error
				if ids[i], err = w.legacyInsert(w.legacy, fmt.Sprintf("u-%d", i), i); err != nil {
					t.Fatal(err)
				}
			}
			w.converged(n, 90*time.Second)
			w.procs[syncFwd].kill9()
			w.procs[syncRev].kill9()
			want := map[int64]string{}
			winner := map[int64]string{}
			for i, id := range ids {
				l, c := fmt.Sprintf("L-%d", i), fmt.Sprintf("C-%d", i)
				first, second := func() { w.exec(w.legacy, `UPDATE saju_records SET interpretation = $2 WHERE id = $1`, id, l) },
					func() { w.exec(w.cube, `UPDATE cube.saju_charts SET interpretation = $2 WHERE id = $1`, id, c) }
				newest := consumers.SideCube
				if i%2 == 1 { // cube first, legacy later
					first, second = second, first
					newest = consumers.SideLegacy
				}
				first()
				time.Sleep(2 * time.Millisecond) // distinct commit timestamps
				second()
				switch policy {
				case consumers.ConflictLegacyWins:
					winner[id] = consumers.SideLegacy
				case consumers.ConflictCubeWins:
					winner[id] = consumers.SideCube
				default:
					winner[id] = newest
				}
				want[id] = l
				if winner[id] == consumers.SideCube {
					want[id] = c
				}
			}
			w.start(syncFwd)
			w.start(syncRev)
			w.waitFor(90*time.Second, "both sides at the winner's version", func() bool {
				for id, v := range want {
					var lv, cv string
					if err := w.legacy.QueryRow(w.ctx, `SELECT interpretation FROM saju_records WHERE id = $1`, id).Scan(&lv); err != nil {
						t.Fatal(err)
					}
					if err := w.cube.QueryRow(w.ctx, `SELECT interpretation FROM cube.saju_charts WHERE id = $1`, id).Scan(&cv); err != nil {
						t.Fatal(err)
					}
					if lv != v || cv != v {
						return false
					}
				}
				return true
			})
			// each direction recorded one conflict per row, with the policy's winner
			for _, db := range []struct {
				name string
				url  string
				proc string
			}{{"cube (forward direction)", w.cubeURL, syncFwd}, {"legacy (reverse direction)", w.legacyURL, syncRev}} {
				var cs []consumers.Conflict
				w.waitFor(30*time.Second, "conflicts recorded in "+db.name, func() bool {
					conn := testenv.Connect(t, db.url)
					defer conn.Close(w.ctx)
					var err error
					cs, err = consumers.ReadConflicts(w.ctx, conn)
					if err != nil {
						t.Fatal(err)
					}
					return len(cs) >= n
				})
				if len(cs) != n {
					t.Errorf("%s: %d conflicts recorded, want %d: %+v", db.name, len(cs), n, cs)
				}
				for _, c := range cs {
					var key struct{ ID int64 }
					id, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(c.Key, `{"id":`), ` }`), 10, 64)
					if err != nil {
						t.Fatalf("conflict key %q: %v", c.Key, err)
					}
					key.ID = id
					if c.Winner != winner[key.ID] || c.Policy != policy || c.SourceVersion == "" || c.TargetVersion == "" || c.Op != "update" {
						t.Errorf("%s: conflict %+v: want winner %s under %s with both versions", db.name, c, winner[key.ID], policy)
					}
				}
				var total float64
				for _, v := range scrapeConflicts(t, w.metricsAddr[db.proc]) {
					total += v
				}
				if total != n {
					t.Errorf("%s: shadowcube_sync_conflicts_total %v, want %d", db.proc, total, n)
				}
			}
			w.reconcileBoth()
		})
	}
}
