package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/stage"
	"github.com/heal7/shadowcube/schemas"
)

// Reader streams one source database's changes into JetStream. Create it
// with New and call Run once.
type Reader struct {
	cfg    Config
	js     jetstream.JetStream // the caller's handle: streams and KV
	pubNC  *nats.Conn          // own connection for publishing, without a reconnect buffer
	pubJS  jetstream.JetStream // on pubNC: async publish window and timeout
	log    *slog.Logger
	m      *metrics
	ignore map[string]bool

	kv    jetstream.KeyValue
	db    string
	sysID string

	// owned by the session goroutine
	relations map[uint32]*relation
	types     map[typeKey]string

	durable     atomic.Uint64 // end LSN of the last transaction stored contiguously in JetStream
	lastCommit  atomic.Int64  // commit time (unix ns) of that transaction
	slotReady   atomic.Bool
	sourceReady atomic.Bool // checkSource passed once: the heartbeat table exists
	life        stage.Life

	resnapshotStarted bool      // Config.Resnapshot is done or recorded as in progress
	startBy           time.Time // deadline of the start-up attempt to reach the source
}

// Deps are what a Reader uses and does not own.
type Deps struct {
	// JetStream is required: streams and the KV bucket are managed through
	// it, and the Reader opens its own publish connection to the same server.
	JetStream  jetstream.JetStream
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics not registered
}

// New validates cfg and returns a Reader publishing through deps.JetStream.
// It does no I/O: Run connects.
func New(cfg Config, deps Deps) (*Reader, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cdc config: %w", err)
	}
	js, log := deps.JetStream, deps.Logger
	if js == nil {
		return nil, errors.New("cdc: a JetStream handle is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if js.Conn() == nil {
		return nil, errors.New("cdc: the JetStream handle has no NATS connection")
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Reader{cfg: cfg, js: js, log: log.With("slot", cfg.Slot), m: m,
		ignore: map[string]bool{}, types: map[typeKey]string{}}
	for _, o := range cfg.IgnoreOrigins {
		r.ignore[o] = true
	}
	return r, nil
}

// Close stops a running Run (it drains as on ctx end) and waits for it to
// return. Idempotent; Run after Close fails.
func (r *Reader) Close() error { return r.life.Close(nil) }

// Run sets up the source, snapshots when needed, and streams changes until
// ctx is done (then it drains in-flight publishes, acknowledges what
// JetStream stored and returns nil). At start-up the source gets one attempt
// bounded by Config.StartupTimeout: if it cannot be reached, Run returns an
// error naming it (without its password). Once it was reached, connection
// and publish failures are retried with back-off (a WARN line and
// shadowcube_cdc_session_failures_total per attempt); set-up errors and a
// lost slot are returned.
func (r *Reader) Run(ctx context.Context) error {
	ctx, end, err := r.life.Begin(ctx, "cdc")
	if err != nil {
		return err
	}
	defer end()
	streamCfg, err := natsx.StreamConfig(schemas.StreamCDC, r.cfg.Stream)
	if err != nil {
		return fmt.Errorf("cdc: %w", err)
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	opsDone := make(chan struct{})
	go func() {
		defer close(opsDone)
		r.opsLoop(runCtx, cancel)
	}()
	defer func() { cancel(nil); <-opsDone }()
	defer func() {
		if r.pubNC != nil {
			r.pubJS.CleanupPublisher()
			r.pubNC.Close()
		}
	}()

	failures := 0
	r.startBy = time.Now().Add(r.cfg.StartupTimeout)
	for {
		started := time.Now()
		err := r.setupNATS(runCtx, streamCfg)
		natsFailed := err != nil
		if err == nil {
			err = r.session(runCtx, r.cfg.Resnapshot && !r.resnapshotStarted)
		}
		if ctx.Err() != nil {
			return nil
		}
		if cause := context.Cause(runCtx); cause != nil && isFatal(cause) {
			return fmt.Errorf("cdc: %w", cause)
		}
		if err == nil {
			err = errors.New("replication session ended without an error")
		}
		if isFatal(err) {
			return fmt.Errorf("cdc: %w", err)
		}
		if !r.sourceReady.Load() && natsFailed {
			return fmt.Errorf("cdc: start-up failed: %w; check that NATS runs JetStream and this account may create streams and key-value buckets", err)
		}
		if !r.sourceReady.Load() {
			// Start-up: one bounded attempt, then a clear error; retrying
			// forever would hide a wrong URL or a source that is down.
			return fmt.Errorf("cdc: start-up failed (one attempt, bounded by %s): %w; check that PostgreSQL at %s is up and accepts this role's connections from here, including replication connections (pg_hba.conf, password, firewall), and SHADOWCUBE_SOURCE_DATABASE_URL; SHADOWCUBE_STARTUP_TIMEOUT sets the bound; once started, cdc retries with back-off",
				r.cfg.StartupTimeout, err, redactURL(r.cfg.DatabaseURL))
		}
		r.m.failures.Inc()
		if time.Since(started) > time.Minute {
			failures = 0
		}
		failures++
		wait := min(time.Duration(1<<min(failures, 10))*125*time.Millisecond, r.cfg.RetryMax)
		wait = wait/2 + rand.N(wait/2+1)
		r.log.Warn("replication session ended; retrying", "err", err, "attempt", failures, "retry_in", wait.Round(time.Millisecond), "lsn", schemas.LSN(r.durable.Load()).String())
		select {
		case <-runCtx.Done():
		case <-time.After(wait):
		}
	}
}

func (r *Reader) setupNATS(ctx context.Context, streamCfg jetstream.StreamConfig) error {
	if r.kv != nil {
		return nil
	}
	if r.pubNC == nil {
		// Events are published on a connection of our own with no reconnect
		// buffer: messages published while NATS is away fail at once instead
		// of being sent after the reconnect, behind a gap of lost ones, which
		// would store them out of order.
		opts := r.js.Conn().Opts
		opts.ReconnectBufSize = -1
		opts.Name += "-publisher"
		nc, err := opts.Connect()
		if err != nil {
			return fmt.Errorf("connect the publisher to NATS: %w", err)
		}
		pubJS, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(r.cfg.Window+256),
			jetstream.WithPublishAsyncTimeout(r.cfg.PublishTimeout))
		if err != nil {
			nc.Close()
			return fmt.Errorf("cdc: JetStream publisher: %w", err)
		}
		r.pubNC, r.pubJS = nc, pubJS
	}
	ctx, cancel := r.apiCtx(ctx)
	defer cancel()
	if _, err := natsx.EnsureStream(ctx, r.js, streamCfg); err != nil {
		if errors.Is(err, natsx.ErrIncompatibleStream) {
			return fatal(err)
		}
		return err
	}
	// the state bucket is as available as the CDC stream: same replicas and storage
	kv, err := natsx.EnsureKV(ctx, r.js, natsx.KVSettings{Replicas: r.cfg.Stream.Replicas, Storage: r.cfg.Stream.Storage}.Apply(
		jetstream.KeyValueConfig{Bucket: StateBucket, History: 4, Description: "shadowcube cdc: state of each reader's replication slot"}))
	if err != nil {
		return err
	}
	r.kv = kv
	return nil
}

// apiCtx bounds one JetStream API exchange of a session. nats.go bounds a
// request only when ctx has no deadline (by its default timeout); under a
// caller's far deadline, a request whose reply was lost in a NATS leader
// election would hold the session (seen: a stream info request waiting for
// minutes while changes piled up).
func (r *Reader) apiCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.PublishTimeout)
}

// session runs one replication connection: checks, optional snapshot, stream.
func (r *Reader) session(ctx context.Context, resnapshot bool) error {
	r.m.sessions.Inc()
	r.slotReady.Store(false)
	repl, err := r.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer repl.Close(context.Background())
	if r.sysID == "" {
		sys, err := pglogrepl.IdentifySystem(ctx, repl)
		if err != nil {
			return fmt.Errorf("identify source system: %w", err)
		}
		r.sysID = sys.SystemID
	}
	meta, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer meta.Close(context.Background())
	if err := r.checkSource(ctx, meta); err != nil {
		return err
	}
	r.sourceReady.Store(true)
	snap, err := r.decideSnapshot(ctx, meta, resnapshot)
	if err != nil {
		return err
	}
	if snap {
		if err := r.saveState(ctx, slotState{Phase: phaseSnapshotting, Since: time.Now().UTC()}); err != nil {
			return err
		}
		// From here a failed session redoes the snapshot by its state.
		r.resnapshotStarted = true
		res, err := r.createSlot(ctx, repl, meta)
		if err != nil {
			return err
		}
		cp, err := pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return fmt.Errorf("slot %s: consistent point %q: %w", r.cfg.Slot, res.ConsistentPoint, err)
		}
		r.log.Info("created slot; copying tables", "lsn", res.ConsistentPoint, "snapshot", res.SnapshotName)
		if err := r.snapshot(ctx, meta, res.SnapshotName, schemas.LSN(cp)); err != nil {
			return fmt.Errorf("snapshot at %s: %w", res.ConsistentPoint, err)
		}
		if err := r.saveState(ctx, slotState{Phase: phaseStreaming, ConsistentPoint: res.ConsistentPoint, Since: time.Now().UTC()}); err != nil {
			return err
		}
		if uint64(cp) > r.durable.Load() {
			r.durable.Store(uint64(cp))
		}
	}
	// The slot's confirmed position is the floor of what this session
	// reports: PostgreSQL resends everything after it.
	if slot, err := r.readSlot(ctx, meta); err == nil && slot.confirmed != "" {
		if l, err := pglogrepl.ParseLSN(slot.confirmed); err == nil && uint64(l) > r.durable.Load() {
			r.durable.Store(uint64(l))
		}
	}
	r.slotReady.Store(true)
	return r.stream(ctx, repl, meta)
}

// txState is one source transaction being received.
type txState struct {
	xid    uint32
	buf    *txBuffer
	ignore bool
}

type streamState struct {
	cur       *txState
	inStream  bool
	streamXid uint32
	streams   map[uint32]*txState
	reported  schemas.LSN
	pub       *publisher
	// walEnd is the highest ServerWALEnd of this session's keepalives. A
	// keepalive follows, in the replication stream, the changes of every
	// transaction that ends before its position, so once everything this
	// session received is stored, walEnd is safe to acknowledge. It must
	// never outlive the session: a later session starts again from the
	// durable position, and until it has received and stored the
	// transactions up to an old walEnd, acknowledging it would skip them.
	walEnd schemas.LSN
}

func (st *streamState) target(xid uint32) (*txState, uint32, error) {
	if st.inStream {
		tx := st.streams[st.streamXid]
		return tx, xid, nil
	}
	if st.cur == nil {
		return nil, 0, errors.New("change outside a transaction")
	}
	return st.cur, st.cur.xid, nil
}

func (st *streamState) close() {
	if st.cur != nil {
		st.cur.buf.close()
	}
	for _, tx := range st.streams {
		tx.buf.close()
	}
}

func (r *Reader) stream(ctx context.Context, repl *pgconn.PgConn, meta *pgx.Conn) error {
	// the stream's last event, read before replication starts: nothing of
	// this session is published yet (fence.go)
	f, err := r.readFence(ctx)
	if err != nil {
		return err
	}
	args := []string{"proto_version '2'", "publication_names '" + r.cfg.Publication + "'", "messages 'true'"}
	if !r.cfg.NoStreaming {
		args = append(args, "streaming 'true'")
	}
	if err := pglogrepl.StartReplication(ctx, repl, r.cfg.Slot, 0, pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args}); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42704" {
			return fatal(fmt.Errorf("%w: slot %s disappeared: %v; restart with --resnapshot to copy every table again", ErrSlotLost, r.cfg.Slot, err))
		}
		if errors.As(err, &pgErr) && pgErr.Code == "55000" {
			return fatal(fmt.Errorf("%w: start replication on slot %s: %v; restart with --resnapshot", ErrSlotLost, r.cfg.Slot, err))
		}
		return fmt.Errorf("start replication on slot %s: %w", r.cfg.Slot, err)
	}
	r.relations = map[uint32]*relation{}
	st := &streamState{streams: map[uint32]*txState{}, reported: schemas.LSN(r.durable.Load())}
	st.pub = newPublisher(r.pubJS, r.cfg.Window, r.cfg.PublishTimeout, &r.durable, &r.lastCommit, r.m, r.cfg.Slot, f)
	r.log.Info("streaming", "acknowledged_lsn", st.reported.String(), "publication", r.cfg.Publication, "stream_last_event", f.lastID)

	stop := context.AfterFunc(ctx, func() { _ = repl.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	err = r.receiveLoop(ctx, repl, meta, st)
	st.close()
	// Drain: every event already published is acknowledged or failed, then
	// tell PostgreSQL what is durable.
	gaps, pubErr := st.pub.close()
	if st.pub.skipped > 0 {
		r.log.Info("events the CDC stream already held were not published again", "events", st.pub.skipped, "stream_last_event", f.lastID)
	}
	if gaps > 0 {
		r.m.reordered.Add(float64(gaps))
		r.log.Warn("JetStream stored events published after one that failed; the failed ones are re-published after them on restart "+
			"(sync waits for them by the events' prev_lsn chain and applies in source order)", "gaps", gaps, "err", pubErr)
	}
	if !repl.IsClosed() {
		_ = repl.Conn().SetDeadline(time.Now().Add(5 * time.Second))
		_ = r.sendStatus(repl, st, true)
	}
	if err == nil && pubErr != nil {
		err = pubErr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (r *Reader) receiveLoop(ctx context.Context, repl *pgconn.PgConn, meta *pgx.Conn, st *streamState) error {
	nextStatus := time.Now().Add(r.cfg.StatusInterval)
	if err := repl.Conn().SetReadDeadline(nextStatus); err != nil {
		return err
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-st.pub.failed:
			return st.pub.failure()
		default:
		}
		if now := time.Now(); !now.Before(nextStatus) {
			if err := r.sendStatus(repl, st, false); err != nil {
				return err
			}
			nextStatus = now.Add(r.cfg.StatusInterval)
			if err := repl.Conn().SetReadDeadline(nextStatus); err != nil {
				return err
			}
		}
		raw, err := repl.ReceiveMessage(context.Background())
		if err != nil {
			var ne net.Error
			if pgconn.Timeout(err) || (errors.As(err, &ne) && ne.Timeout()) {
				if ctx.Err() == nil && time.Now().Before(nextStatus) {
					_ = repl.Conn().SetReadDeadline(nextStatus)
				}
				continue
			}
			return fmt.Errorf("receive from source: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return errors.New("replication stream: server ended the copy")
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if l := schemas.LSN(pkm.ServerWALEnd); l > st.walEnd {
					st.walEnd = l
				}
				if pkm.ReplyRequested {
					if err := r.sendStatus(repl, st, false); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				if err := r.handle(ctx, meta, st, xld); err != nil {
					return err
				}
			}
		}
	}
}

// sendStatus acknowledges the durable position: the end of the last
// transaction JetStream stored contiguously, or the WAL end this session's
// keepalives reported when nothing at all is in flight or buffered.
func (r *Reader) sendStatus(repl *pgconn.PgConn, st *streamState, final bool) error {
	// The final update (session ending, maybe after a failure) reports only
	// what JetStream acknowledged.
	idle := !final && st.pub.idle() && st.cur == nil && len(st.streams) == 0
	pos := schemas.LSN(r.durable.Load())
	walEnd := st.walEnd
	if idle && walEnd > pos {
		pos = walEnd
	}
	if pos < st.reported {
		pos = st.reported
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(pos), WALFlushPosition: pglogrepl.LSN(pos), WALApplyPosition: pglogrepl.LSN(pos)})
	if err != nil {
		if final {
			return nil
		}
		return fmt.Errorf("send standby status at %s: %w", pos, err)
	}
	st.reported = pos
	if walEnd > pos {
		r.m.lagBytes.Set(float64(walEnd - pos))
	} else {
		r.m.lagBytes.Set(0)
	}
	if idle {
		r.m.lagSeconds.Set(0)
	} else if t := r.lastCommit.Load(); t != 0 {
		r.m.lagSeconds.Set(time.Since(time.Unix(0, t)).Seconds())
	}
	return nil
}

func (r *Reader) handle(ctx context.Context, meta *pgx.Conn, st *streamState, xld pglogrepl.XLogData) error {
	msg, err := parseMessage(xld.WALData, st.inStream)
	if err != nil {
		return fmt.Errorf("decode pgoutput message at %s: %w", xld.WALStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if st.cur != nil {
			st.cur.buf.close()
		}
		st.cur = &txState{xid: m.Xid, buf: newTxBuffer(r.cfg.SpillDir, r.cfg.SpillThreshold, r.m)}
	case *pglogrepl.CommitMessage:
		tx := st.cur
		st.cur = nil
		if tx == nil {
			return fmt.Errorf("commit at %s without begin", m.CommitLSN)
		}
		return r.finish(ctx, st, tx, tx.xid, m.CommitLSN, m.TransactionEndLSN, m.CommitTime)
	case *pglogrepl.StreamStartMessageV2:
		st.inStream, st.streamXid = true, m.Xid
		if st.streams[m.Xid] == nil {
			st.streams[m.Xid] = &txState{xid: m.Xid, buf: newTxBuffer(r.cfg.SpillDir, r.cfg.SpillThreshold, r.m)}
		}
	case *pglogrepl.StreamStopMessageV2:
		st.inStream = false
	case *pglogrepl.StreamCommitMessageV2:
		tx := st.streams[m.Xid]
		delete(st.streams, m.Xid)
		if tx == nil {
			tx = &txState{xid: m.Xid, buf: newTxBuffer(r.cfg.SpillDir, r.cfg.SpillThreshold, r.m)}
		}
		return r.finish(ctx, st, tx, m.Xid, m.CommitLSN, m.TransactionEndLSN, m.CommitTime)
	case *pglogrepl.StreamAbortMessageV2:
		tx := st.streams[m.Xid]
		if tx == nil {
			return nil
		}
		if m.SubXid == m.Xid || m.SubXid == 0 {
			tx.buf.close()
			delete(st.streams, m.Xid)
			r.log.Debug("discarded aborted streamed transaction", "xid", m.Xid)
			return nil
		}
		return tx.buf.abortSub(m.SubXid)
	case *pglogrepl.RelationMessageV2:
		rel, err := r.buildRelation(ctx, meta, &m.RelationMessage)
		if err != nil {
			return err
		}
		old := r.relations[m.RelationID]
		r.relations[m.RelationID] = rel
		if old != nil && !old.sameShape(rel) {
			tx, sub, err := st.target(m.Xid)
			if err != nil || tx == nil {
				return nil
			}
			r.log.Info("table shape changed", "table", rel.schema+"."+rel.table, "lsn", xld.WALStart.String())
			return tx.buf.add(&pending{Subject: rel.subject, Event: r.newEvent(rel, schemas.OpSchema), size: 512}, sub)
		}
	case *pglogrepl.InsertMessageV2, *pglogrepl.UpdateMessageV2, *pglogrepl.DeleteMessageV2:
		var xid uint32
		switch c := m.(type) {
		case *pglogrepl.InsertMessageV2:
			xid = c.Xid
		case *pglogrepl.UpdateMessageV2:
			xid = c.Xid
		case *pglogrepl.DeleteMessageV2:
			xid = c.Xid
		}
		tx, sub, err := st.target(xid)
		if err != nil || tx == nil {
			return fmt.Errorf("change at %s: %w", xld.WALStart, errOr(err, "stream without start"))
		}
		p, err := r.changeEvent(m)
		if err != nil {
			return err
		}
		return tx.buf.add(p, sub)
	case *pglogrepl.TruncateMessageV2:
		tx, sub, err := st.target(m.Xid)
		if err != nil || tx == nil {
			return fmt.Errorf("truncate at %s: %w", xld.WALStart, errOr(err, "stream without start"))
		}
		ps, err := r.truncateEvents(m)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := tx.buf.add(p, sub); err != nil {
				return err
			}
		}
	case *pglogrepl.LogicalDecodingMessageV2:
		if m.Transactional && m.Prefix == OriginPrefix && r.ignore[string(m.Content)] {
			if tx, _, err := st.target(m.Xid); err == nil && tx != nil {
				tx.ignore = true
			}
		}
	}
	return nil
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// finish publishes a committed transaction's events in order.
func (r *Reader) finish(ctx context.Context, st *streamState, tx *txState, xid uint32, commitLSN, endLSN pglogrepl.LSN, commitTime time.Time) error {
	defer tx.buf.close()
	n := tx.buf.len()
	commitTime = commitTime.UTC()
	end := schemas.LSN(endLSN)
	if tx.ignore || n == 0 {
		if tx.ignore {
			r.m.skippedTx.Inc()
		}
		return st.pub.mark(ctx, end, commitTime)
	}
	r.m.transactions.Inc()
	if n > 1000 {
		r.log.Info("publishing large transaction", "xid", xid, "events", n, "spilled", tx.buf.spilled(), "lsn", commitLSN.String())
	}
	lsn := schemas.LSN(commitLSN)
	prefix := r.cfg.Slot + ":" + lsn.String() + ":"
	prev := st.pub.prev
	st.pub.prev = lsn
	return tx.buf.each(func(i int, p *pending) error {
		ev := p.Event
		ev.CommitLSN, ev.TxID, ev.Index, ev.TxSize, ev.CommitTime = lsn, xid, i, n, commitTime
		ev.PrevLSN = prev
		data := marshalEvent(ev)
		if len(data) > schemas.MaxEventSize {
			return fatal(fmt.Errorf("change %d of transaction %d on %s.%s at %s is %d bytes, over the %d-byte event limit",
				i, xid, ev.Schema, ev.Table, lsn, len(data), schemas.MaxEventSize))
		}
		var e schemas.LSN
		if i == n-1 {
			e = end
		}
		return st.pub.publish(ctx, p.Subject, prefix+strconv.Itoa(i), data, ev.Op, e, commitTime)
	})
}

// parseMessage decodes one pgoutput message. pglogrepl indexes the buffer
// without bounds checks: a malformed message becomes an error, not a panic.
func parseMessage(data []byte, inStream bool) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty pgoutput message")
	}
	if err := checkLengths(data, inStream); err != nil {
		return nil, fmt.Errorf("malformed pgoutput message of type %q (%d bytes): %w", data[0], len(data), err)
	}
	defer func() {
		if p := recover(); p != nil {
			msg, err = nil, fmt.Errorf("malformed pgoutput message of type %q (%d bytes): %v", data[0], len(data), p)
		}
	}()
	return pglogrepl.ParseV2(data, inStream)
}

// checkLengths verifies the length and count fields pglogrepl allocates by,
// so a corrupt message cannot make it allocate gigabytes.
func checkLengths(data []byte, inStream bool) error {
	off := 1
	if inStream && strings.IndexByte("RYIUDTM", data[0]) >= 0 {
		off += 4
	}
	need := func(n int) error {
		if off+n > len(data) {
			return errors.New("truncated")
		}
		return nil
	}
	tuple := func() error {
		if err := need(2); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(data[off:]))
		off += 2
		for range n {
			if err := need(1); err != nil {
				return err
			}
			kind := data[off]
			off++
			switch kind {
			case 'n', 'u':
			case 't', 'b':
				if err := need(4); err != nil {
					return err
				}
				l := int(binary.BigEndian.Uint32(data[off:]))
				off += 4
				if l < 0 || l > len(data) {
					return errors.New("column length beyond the message")
				}
				if err := need(l); err != nil {
					return err
				}
				off += l
			default:
				return fmt.Errorf("column kind %q", kind)
			}
		}
		return nil
	}
	switch data[0] {
	case 'T':
		if err := need(5); err != nil {
			return err
		}
		if n := int(binary.BigEndian.Uint32(data[off:])); n < 0 || n > len(data)/4 {
			return errors.New("relation count beyond the message")
		}
	case 'I':
		off += 5 // relation id, 'N'
		return tuple()
	case 'D':
		off += 5 // relation id, 'K' or 'O'
		return tuple()
	case 'U':
		off += 4
		if err := need(1); err != nil {
			return err
		}
		if k := data[off]; k == 'K' || k == 'O' {
			off++
			if err := tuple(); err != nil {
				return err
			}
		}
		off++ // 'N'
		return tuple()
	}
	return nil
}

// readFence reads the CDC stream's last event for ordered publishing
// (fence.go), and says when another writer keeps the chain off.
func (r *Reader) readFence(ctx context.Context) (fence, error) {
	ctx, cancel := r.apiCtx(ctx)
	defer cancel()
	f, err := readFence(ctx, r.pubJS, r.cfg.Slot)
	if err != nil {
		return f, err
	}
	if f.replicated {
		r.log.Info("the CDC stream is replicated: publishing without the order fence (nats-server checks the expected last id of a "+
			"replicated stream only when replicas apply a message, and a mismatch stalls them); an event lost in a leader election "+
			"may be stored after later ones (shadowcube_cdc_publish_gaps_total), and sync restores the order by the events' prev_lsn chain", "slot", r.cfg.Slot)
		return f, nil
	}
	if !f.chain {
		r.log.Warn("the CDC stream's last event is another writer's: publishing without the order fence "+
			"(run one cdc reader per CDC stream; an event lost in a NATS leader election may then be stored after later ones)",
			"slot", r.cfg.Slot, "last_event", f.foreign)
	}
	return f, nil
}
