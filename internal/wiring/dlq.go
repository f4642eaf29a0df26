package wiring

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/schemas"
)

// ReplayDeadLetters replays the DLQ entries seqs (every entry of stage
// when all is set; stage "" = every stage): shadow and compare entries are
// republished on their original subject, sync entries applied to their
// target through the mapping of mappingFile (loaded, and its source
// connected, at the first sync entry only). done is called after each.
func ReplayDeadLetters(ctx context.Context, js jetstream.JetStream, stage string, seqs []uint64, all bool, mappingFile string,
	done func(seq uint64, entry *schemas.DeadLetter, applied *schemas.SyncDeadLetter)) error {
	if all {
		if err := natsx.ListDeadLetters(ctx, js, stage, func(msg natsx.DeadLetterMsg) error {
			seqs = append(seqs, msg.Seq)
			return nil
		}); err != nil {
			return err
		}
	}
	sr := &syncReplayer{mappingFile: mappingFile}
	defer sr.close()
	for _, seq := range seqs {
		msg, err := natsx.GetDeadLetter(ctx, js, seq, stage)
		if err != nil {
			return err
		}
		if msg.Entry.Stage != schemas.StageSync {
			if _, err := natsx.RepublishDeadLetter(ctx, js, seq); err != nil {
				return err
			}
			done(seq, &msg.Entry, nil)
			continue
		}
		en, err := sr.replay(ctx, js, seq, msg.Entry.Sync)
		if err != nil {
			return err
		}
		done(seq, &msg.Entry, en)
	}
	return nil
}

// syncReplayer replays sync entries through the mapping.
type syncReplayer struct {
	mappingFile string
	m           *Mapping
	src         *pgx.Conn
	validated   map[string]bool
}

func (r *syncReplayer) replay(ctx context.Context, js jetstream.JetStream, seq uint64, entry *schemas.SyncDeadLetter) (*schemas.SyncDeadLetter, error) {
	if entry == nil {
		return nil, fmt.Errorf("DLQ entry %d is not a readable sync entry (see dlq show %d)", seq, seq)
	}
	if r.m == nil {
		m, err := LoadMapping(r.mappingFile)
		if err != nil {
			return nil, fmt.Errorf("DLQ entry %d is a sync entry: %w", seq, err)
		}
		conn, err := consumers.ConnectSource(ctx, m.SourceURL)
		if err != nil {
			return nil, fmt.Errorf("connect to source database: %w", err)
		}
		r.m, r.src, r.validated = m, conn, map[string]bool{}
	}
	t := r.m.Target(entry.Target)
	if t == nil {
		return nil, fmt.Errorf("DLQ entry %d: target %q is not in %s", seq, entry.Target, r.mappingFile)
	}
	if r.m.TargetURLs[t.Name] == "" {
		return nil, &process.EnvError{Var: t.DatabaseURLEnv, Msg: "required: database URL of target " + t.Name}
	}
	pool, err := consumers.OpenTargetPool(ctx, r.m.TargetURLs[t.Name])
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if !r.validated[t.Name] {
		if err := r.m.Validate(ctx, t, r.src, pool); err != nil {
			return nil, err
		}
		r.validated[t.Name] = true
	}
	return consumers.ReplayDLQ(ctx, js, seq, r.m.Mapping, pool)
}

func (r *syncReplayer) close() {
	if r.src != nil {
		r.src.Close(context.Background())
	}
}
