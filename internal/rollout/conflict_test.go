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
// are down (so each write is inside the other's sync lag): updates on both
// sides, and a delete racing an update each way round. Then it starts the
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
			// a delete racing an update, each way round: rows n and n+1
			var del [2]int64
			for i := range del {
				var err error
				if del[i], err = w.legacyInsert(w.legacy, fmt.Sprintf("d-%d", i), i); err != nil {
					t.Fatal(err)
				}
			}
			w.start(syncFwd)
			w.start(syncRev)
			w.converged(n+2, 90*time.Second)
			w.procs[syncFwd].kill9()
			w.procs[syncRev].kill9()
			w.exec(w.legacy, `DELETE FROM saju_records WHERE id = $1`, del[0])
			w.exec(w.cube, `UPDATE cube.saju_charts SET interpretation = 'C-del' WHERE id = $1`, del[0])
			w.exec(w.legacy, `UPDATE saju_records SET interpretation = 'L-del' WHERE id = $1`, del[1])
			w.exec(w.cube, `DELETE FROM cube.saju_charts WHERE id = $1`, del[1])
			const gone = "(deleted)"
			switch policy {
			case consumers.ConflictLegacyWins:
				want[del[0]], want[del[1]] = gone, "L-del"
				winner[del[0]], winner[del[1]] = consumers.SideLegacy, consumers.SideLegacy
			case consumers.ConflictCubeWins:
				want[del[0]], want[del[1]] = "C-del", gone
				winner[del[0]], winner[del[1]] = consumers.SideCube, consumers.SideCube
			default: // the delete wins
				want[del[0]], want[del[1]] = gone, gone
				winner[del[0]], winner[del[1]] = consumers.SideLegacy, consumers.SideCube
			}
			w.start(syncFwd)
			w.start(syncRev)
			read := func(sql string, id int64) string {
				var v string
				c := w.legacy
				if strings.Contains(sql, "cube.") {
					c = w.cube
				}
				if err := c.QueryRow(w.ctx, sql, id).Scan(&v); err != nil {
					return gone
				}
				return v
			}
			w.waitFor(90*time.Second, "both sides at the winner's version", func() bool {
				for id, v := range want {
					if read(`SELECT interpretation FROM saju_records WHERE id = $1`, id) != v || read(`SELECT interpretation FROM cube.saju_charts WHERE id = $1`, id) != v {
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
					return len(cs) >= n+2
				})
				if len(cs) != n+2 {
					t.Errorf("%s: %d conflicts recorded, want %d: %+v", db.name, len(cs), n+2, cs)
				}
				for _, c := range cs {
					var key struct{ ID int64 }
					id, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(c.Key, `{"id":`), ` }`), 10, 64)
					if err != nil {
						t.Fatalf("conflict key %q: %v", c.Key, err)
					}
					key.ID = id
					// both versions, except the side where the row is deleted
					versions := (c.SourceVersion != "") == (c.Op != "delete") && (c.TargetVersion != "" || key.ID == del[0] || key.ID == del[1])
					if c.Winner != winner[key.ID] || c.Policy != policy || !versions {
						t.Errorf("%s: conflict %+v: want winner %s under %s with both versions", db.name, c, winner[key.ID], policy)
					}
				}
				var total float64
				for _, v := range scrapeConflicts(t, w.metricsAddr[db.proc]) {
					total += v
				}
				if total != 2 { // the process started before the delete races only
					t.Errorf("%s: shadowcube_sync_conflicts_total %v, want 2 (the conflicts since its last start)", db.proc, total)
				}
			}
			w.reconcileBoth()
		})
	}
}
