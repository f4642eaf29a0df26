// Package demo holds the systems under test that shadowcube is shown and
// tested against: a legacy saju (Four Pillars) HTTP service writing the flat
// legacy table saju_records, a saju cube with its own nested schema
// (cube.saju_charts, filled by the sync stage), a legacy AI analysis service
// and an AI cube, and a traffic generator of realistic birth data.
//
// Both saju services are real calculations on github.com/6tail/lunar-go and
// differ only by the documented conventions in Divergences (zi-hour day
// change, solar-term time basis, Korean clock history), so a realistic
// traffic mix gives a small mismatch rate in which every mismatch has exactly
// one cause (see Attribute). The AI pair classifies the chart's dominant
// element with a tunable error rate against the reference rule TruthLabel.
//
// Pipeline packages never import this package: the demo talks to them only
// over HTTP and PostgreSQL, like the real legacy system would.
package demo
