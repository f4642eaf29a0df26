// Package comparator judges the answers of a shadow replay: it reads
// schemas.ShadowResult pairs (legacy answer, cube answer, optional second
// legacy answer) and decides, per route, whether the cube answered the same.
//
// The pieces, in data-flow order:
//   - a rule engine on go-cmp for JSON answers (Rules: ignored paths, numeric
//     tolerance, unordered arrays, string normalisation, selected headers)
//     that yields schemas.Diff entries (changed / missing / extra / type / order);
//   - the saju comparison (kind "saju"): Hanja and Hangul forms compare equal,
//     interpretation compared by presence only, and every mismatch tagged with
//     the causes its birth data explains (zi-hour, solar-term-boundary, ...);
//   - the AI comparison (kind "ai"): label agreement, confidence difference and
//     accuracy against a truth label with Wilson intervals and a
//     two-proportion test;
//   - Diffy-style noise suppression per route and field path, learned from a
//     second legacy instance (or from repeated identical requests);
//   - signatures (route + differing paths + causes) and an accepted-signatures
//     YAML file;
//   - the mismatch store in PostgreSQL (Store) and the JetStream consumer loop
//     (Consumer) that acknowledges a result only after its verdict committed.
package comparator
