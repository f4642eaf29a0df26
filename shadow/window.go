package shadow

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/schemas"
)

// Pace is how fast a window is replayed: Speed times the recorded pace
// (1 = the original gaps between captures, 10 = a tenth of them); 0 = as
// fast as the cube and the targets' limits allow.
type Pace struct{ Speed float64 }

// ParsePace reads a --pace value: recorded, max, or a speed-up such as 10x
// or 0.5x.
func ParsePace(s string) (Pace, error) {
	switch s {
	case "recorded":
		return Pace{Speed: 1}, nil
	case "max":
		return Pace{}, nil
	}
	if f, ok := strings.CutSuffix(s, "x"); ok {
		if v, err := strconv.ParseFloat(f, 64); err == nil && v > 0 && v <= 1e6 {
			return Pace{Speed: v}, nil
		}
	}
	return Pace{}, fmt.Errorf("pace %q: want recorded, max or a speed-up such as 10x (above 0)", s)
}

func (p Pace) String() string {
	switch p.Speed {
	case 0:
		return "max"
	case 1:
		return "recorded"
	}
	return strconv.FormatFloat(p.Speed, 'g', -1, 64) + "x"
}

// Window is a replay of the requests captured in [Since, Until].
type Window struct {
	// Since and Until bound the capture time (RequestEvent.CapturedAt),
	// both included. Since is required; a zero Until is the time the
	// replay starts.
	Since, Until time.Time
	// Pace: the recorded gaps, sped up, or max.
	Pace Pace
	// Loop repeats the window until ctx ends (load tests).
	Loop bool
	// Skew is how long after its capture a request may reach
	// LEGACY_REQUESTS (the tap publishes asynchronously; an import stores
	// old captures now). Reading starts at the stream time Since − Skew and
	// stops at the first message stored after Until + Skew. Default 1m.
	Skew time.Duration
}

// Summary is what one window replay (one pass, or the sum over the passes
// of a loop) did.
type Summary struct {
	Passes     int
	Scanned    int64            // messages read from LEGACY_REQUESTS
	Outside    int64            // read but captured outside the window
	Replayed   int64            // replayed and stored
	Skipped    map[string]int64 // not replayed, by policy reason (nothing stored)
	CubeErrors int64            // of Replayed: the cube answered with an error or timed out
	Failed     int64            // not stored: undecodable, unknown route, no cube answer, store failed
	Span       time.Duration    // capture time from the first to the last request replayed
	Duration   time.Duration    // wall time from the first replay sent to the last one stored
	Pace       Pace
}

// Asked is the rate the pace asks for: replayed requests over the span at
// the pace's speed (0 for max).
func (s Summary) Asked() float64 {
	if s.Pace.Speed == 0 || s.Span <= 0 {
		return 0
	}
	return float64(s.Replayed) / (s.Span.Seconds() / s.Pace.Speed)
}

// Achieved is the rate reached: replayed requests over Duration.
func (s Summary) Achieved() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Replayed) / s.Duration.Seconds()
}

// SkippedTotal sums Skipped.
func (s Summary) SkippedTotal() int64 {
	var n int64
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

// String is the one-line summary `shadow --since` prints.
func (s Summary) String() string {
	var reasons []string
	for _, k := range slices.Sorted(maps.Keys(s.Skipped)) {
		reasons = append(reasons, fmt.Sprintf("%s=%d", k, s.Skipped[k]))
	}
	asked := "max"
	if s.Pace.Speed > 0 {
		asked = fmt.Sprintf("%.1f req/s (%s)", s.Asked(), s.Pace)
	}
	return fmt.Sprintf("window replay: passes %d, replayed %d, skipped by policy %d [%s], cube errors %d, failed %d, outside the window %d, scanned %d, duration %s, achieved %.1f req/s, asked %s",
		s.Passes, s.Replayed, s.SkippedTotal(), strings.Join(reasons, " "), s.CubeErrors, s.Failed, s.Outside, s.Scanned,
		s.Duration.Round(time.Millisecond), s.Achieved(), asked)
}

func (s *Summary) add(o Summary) {
	s.Passes += o.Passes
	s.Scanned += o.Scanned
	s.Outside += o.Outside
	s.Replayed += o.Replayed
	s.CubeErrors += o.CubeErrors
	s.Failed += o.Failed
	s.Span += o.Span
	s.Duration += o.Duration
	if s.Skipped == nil {
		s.Skipped = map[string]int64{}
	}
	for k, v := range o.Skipped {
		s.Skipped[k] += v
	}
}

// ReplayWindow replays the requests captured in w's window, once or (Loop)
// until ctx ends, and returns what it did; pass, when set, is called with
// each pass's summary. It reads LEGACY_REQUESTS with its own ordered
// (ephemeral) consumer starting at the stream time Since − Skew (a
// JetStream start-time lookup, no scan from the start), so live replayers
// and their durables are untouched. A pass ends by itself at the first
// message stored after Until + Skew or at the last message stored when it
// started. Requests are replayed in stream order per user (UserKey: a
// user's requests go through one worker, one at a time), the n-th at
// start + (its capture time − the first's) / speed. Requests the policy
// does not replay are counted, not stored. Results go to the Sink, else to
// SHADOW_RESULTS, with the Nats-Msg-Id "<request id>@<replay time>" (a
// replay of a window is a new pair, never de-duplicated against the live
// one). Use a Replayer either for Start or for ReplayWindow, not both.
func (r *Replayer) ReplayWindow(ctx context.Context, w Window, pass func(Summary)) (Summary, error) {
	if w.Since.IsZero() {
		return Summary{}, errors.New("shadow: window replay: --since is required")
	}
	if w.Until.IsZero() {
		w.Until = r.cfg.Now()
	}
	if w.Until.Before(w.Since) {
		return Summary{}, fmt.Errorf("shadow: window replay: --until %s is before --since %s", w.Until.Format(time.RFC3339Nano), w.Since.Format(time.RFC3339Nano))
	}
	if w.Pace.Speed < 0 {
		return Summary{}, fmt.Errorf("shadow: window replay: pace %v: must be ≥ 0", w.Pace.Speed)
	}
	if w.Skew < 0 {
		return Summary{}, fmt.Errorf("shadow: window replay: skew %v: must be ≥ 0", w.Skew)
	}
	if w.Skew == 0 {
		w.Skew = time.Minute
	}
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return Summary{}, errors.New("shadow: window replay: replayer already started or closed")
	}
	r.started = true
	r.mu.Unlock()
	kv, err := r.setup(ctx)
	if err != nil {
		return Summary{}, err
	}
	followCtx, stopFollow := context.WithCancel(ctx)
	var follower sync.WaitGroup
	follower.Add(1)
	go func() {
		defer follower.Done()
		r.marks.follow(followCtx, kv)
	}()
	defer follower.Wait()
	defer stopFollow()
	total := Summary{Pace: w.Pace, Skipped: map[string]int64{}}
	for {
		s, err := r.windowPass(ctx, w)
		if ctx.Err() != nil && w.Loop {
			s.Passes = 0 // a pass cut short by the stop is not reported
		} else if pass != nil && err == nil {
			pass(s)
		}
		total.add(s)
		if err == nil && w.Loop && ctx.Err() == nil && s.Replayed == 0 && s.SkippedTotal() == 0 {
			return total, fmt.Errorf("shadow: window replay: no request captured from %s to %s to loop over",
				w.Since.Format(time.RFC3339Nano), w.Until.Format(time.RFC3339Nano))
		}
		if err != nil || !w.Loop || ctx.Err() != nil {
			if ctx.Err() != nil && w.Loop {
				err = nil // a loop ends when it is stopped
			}
			return total, err
		}
	}
}

// windowItem is one request of a pass on its way to a worker.
type windowItem struct {
	ev  schemas.RequestEvent
	svc *service
	d   decision
	rt  routeRef
}

type routeRef = *routes.Route

// windowPass replays the window once.
func (r *Replayer) windowPass(ctx context.Context, w Window) (Summary, error) {
	sum := Summary{Passes: 1, Pace: w.Pace, Skipped: map[string]int64{}}
	start := w.Since.Add(-w.Skew)
	stopAfter := w.Until.Add(w.Skew)
	st, err := r.js.Stream(ctx, schemas.StreamLegacyRequests)
	if err != nil {
		return sum, fmt.Errorf("shadow: window replay: %s: %w", schemas.StreamLegacyRequests, err)
	}
	info := st.CachedInfo()
	if info.State.Msgs == 0 || info.State.LastTime.Before(start) {
		return sum, nil // nothing stored since the window began
	}
	lastSeq := info.State.LastSeq
	filters := make([]string, 0, len(r.services))
	for _, s := range r.services {
		filters = append(filters, schemas.PrefixLegacyRequest+"."+schemas.EscapeToken(s.spec.Name)+".>")
	}
	slices.Sort(filters)
	cons, err := r.js.OrderedConsumer(ctx, schemas.StreamLegacyRequests, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return sum, fmt.Errorf("shadow: window replay: consumer on %s: %w", schemas.StreamLegacyRequests, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(min(r.cfg.MaxInFlight, 512)))
	if err != nil {
		return sum, fmt.Errorf("shadow: window replay: consume %s: %w", schemas.StreamLegacyRequests, err)
	}
	defer iter.Stop()

	// Workers: a user's requests always go to the same one, in order.
	nw := r.cfg.MaxInFlight
	queues := make([]chan windowItem, nw)
	var (
		wg                     sync.WaitGroup
		replayed, cubeErr, bad atomic.Int64
		lastDone               atomic.Int64 // unix nanos of the last stored result
		skipMu                 sync.Mutex
	)
	seed := maphash.MakeSeed()
	for i := range queues {
		queues[i] = make(chan windowItem, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range queues[i] {
				ok, cerr := r.replayWindowed(ctx, &it)
				switch {
				case !ok:
					bad.Add(1)
				default:
					replayed.Add(1)
					if cerr {
						cubeErr.Add(1)
					}
				}
				lastDone.Store(time.Now().UnixNano())
			}
		}()
	}
	var first, last time.Time // capture times of the first and last dispatched
	var began time.Time       // wall time of the first dispatch
	dispatched := 0
	finish := func() Summary {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
		sum.Replayed, sum.CubeErrors = replayed.Load(), cubeErr.Load()
		sum.Failed += bad.Load()
		if dispatched > 0 {
			sum.Span = last.Sub(first)
			sum.Duration = time.Unix(0, lastDone.Load()).Sub(began)
		}
		return sum
	}
	firstWait := true
	for {
		var msg jetstream.Msg
		if firstWait {
			// Nothing matching may have been stored after the start time.
			msg, err = iter.Next(jetstream.NextMaxWait(5 * time.Second))
			firstWait = false
			if errors.Is(err, nats.ErrTimeout) {
				return finish(), nil
			}
		} else {
			msg, err = iter.Next(jetstream.NextContext(ctx))
		}
		if err != nil {
			s := finish()
			if ctx.Err() != nil {
				return s, nil
			}
			return s, fmt.Errorf("shadow: window replay: read %s: %w", schemas.StreamLegacyRequests, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			sum.Failed++
			continue
		}
		if md.Timestamp.After(stopAfter) {
			return finish(), nil
		}
		sum.Scanned++
		end := md.Sequence.Stream >= lastSeq || md.NumPending == 0
		ev, err := schemas.DecodeRequestEvent(msg.Data())
		switch {
		case err != nil:
			sum.Failed++
		case ev.CapturedAt.Before(w.Since) || ev.CapturedAt.After(w.Until):
			sum.Outside++
		default:
			svc, ok := r.services[ev.Service]
			var rt routeRef
			if ok {
				rt, ok = svc.resolve(&ev)
			}
			if !ok {
				sum.Failed++
				break
			}
			d := r.policy(&ev, rt)
			if d.skip != "" {
				skipMu.Lock()
				sum.Skipped[d.skip]++
				skipMu.Unlock()
				r.m.skipped.WithLabelValues(ev.Service, rt.Route, d.skip).Inc()
				break
			}
			if dispatched == 0 {
				first, began = ev.CapturedAt, time.Now()
			}
			if ev.CapturedAt.After(last) {
				last = ev.CapturedAt
			}
			if w.Pace.Speed > 0 {
				due := began.Add(time.Duration(float64(ev.CapturedAt.Sub(first)) / w.Pace.Speed))
				if wait := time.Until(due); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return finish(), nil
					case <-t.C:
					}
				}
			}
			key := ev.UserKey
			if key == "" {
				key = ev.ID
			}
			select {
			case queues[maphash.String(seed, key)%uint64(nw)] <- windowItem{ev: ev, svc: svc, d: d, rt: rt}:
				dispatched++
			case <-ctx.Done():
				return finish(), nil
			}
		}
		if end {
			return finish(), nil
		}
	}
}

// replayWindowed replays one request of a window and stores its result.
// A cube that cannot answer now is asked again after the delay it asks
// for, up to CubeErrorAttempts deliveries counted as in live replay, then
// a last time on which any answer or error is recorded. ok is false when
// nothing was stored; cubeErr when the stored result carries a cube error.
func (r *Replayer) replayWindowed(ctx context.Context, it *windowItem) (ok, cubeErr bool) {
	var res *schemas.ShadowResult
	for attempt := uint64(1); ; attempt++ {
		var retry time.Duration
		var err error
		res, retry, err = r.replay(ctx, it.svc, it.rt, &it.ev, it.d, delivery{n: attempt})
		if err != nil {
			return false, false
		}
		if retry == 0 {
			break
		}
		if attempt >= uint64(r.cfg.CubeErrorAttempts)+8 { // the breaker never let it through
			r.m.replays.WithLabelValues(it.ev.Service, it.rt.Route, outcomeDeferred).Inc()
			return false, false
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
		}
	}
	msgID := schemas.WindowResultMsgID(res.RequestID, res.ReplayedAt)
	cubeErr = res.CubeError != "" // read now: a sink owns res once it has it
	if r.cfg.Sink != nil {
		done := make(chan error, 1)
		r.cfg.Sink.Put(res, msgID, func(err error) { done <- err })
		if err := <-done; err != nil {
			r.log.Warn("window replay: store result", "request_id", it.ev.ID, "err", err)
			return false, false
		}
	} else {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := r.publishID(pctx, res, msgID)
		cancel()
		if err != nil {
			r.m.publishFailures.Inc()
			r.log.Warn("window replay: publish result", "request_id", it.ev.ID, "err", err)
			return false, false
		}
	}
	outcome := outcomeReplayed
	if cubeErr {
		outcome = outcomeCubeError
	}
	r.m.replays.WithLabelValues(it.ev.Service, it.rt.Route, outcome).Inc()
	return true, cubeErr
}
