// Package analyst turns the mismatch store into the figures the cutover
// decision is made from: Build reads one Figures value (every number of a
// report) from the store's hourly roll-ups, example pairs and reconcile
// results, never from a scan of all pairs; WriteHTML, WriteCSV and
// WriteJSON render it (the web UI renders the same templates, Templates);
// Evaluate scores the gate's criteria on it (go / no-go per cube).
//
// In the data flow it sits after compare: compare writes pairs, roll-ups
// and examples (comparator.Store.Save); report, serve and gate read here.
package analyst
