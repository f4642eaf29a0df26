package webui

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/heal7/shadowcube/comparator"
)

// loadAccepted reads the accepted-signatures file compare reads: its
// route + cause rules are kept for the figures and the export, its
// signature entries the store has never seen are imported.
func (s *Server) loadAccepted(ctx context.Context) error {
	in := s.cfg.AcceptedIn
	if in == "" && s.cfg.AcceptedOut != "" {
		if _, err := os.Stat(s.cfg.AcceptedOut); err == nil {
			in = s.cfg.AcceptedOut
		}
	}
	if in == "" {
		return nil
	}
	a, err := comparator.LoadAccepted(in)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && in == s.cfg.AcceptedOut {
			return nil
		}
		return err
	}
	var sigs []comparator.AcceptedEntry
	for _, e := range a.Entries {
		if e.Signature == "" {
			s.rules = append(s.rules, e)
		} else {
			sigs = append(sigs, e)
		}
	}
	n, err := s.store.ImportAccepted(ctx, sigs, "file "+in)
	if err != nil {
		return err
	}
	s.log.Info("accepted signatures read", "file", in, "rules", len(s.rules), "signatures", len(sigs), "imported", n)
	return nil
}

// accepted is what counts as accepted now: the store's accepted
// signatures and the file's route + cause rules, as compare would read
// them from the export.
func (s *Server) accepted(ctx context.Context) (*comparator.Accepted, error) {
	accs, err := s.store.AcceptedSignatures(ctx)
	if err != nil {
		return nil, err
	}
	data, err := comparator.MarshalAccepted(s.rules, accs)
	if err != nil {
		return nil, err
	}
	a, err := comparator.ParseAccepted("accepted signatures", data)
	if err != nil {
		return nil, fmt.Errorf("accepted signatures: %w", err)
	}
	return a, nil
}
