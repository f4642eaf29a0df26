package comparator

import (
	"errors"
	"fmt"
	"math"
)

// AIConfig is the rollback rule for AI routes: flag the cube when its
// accuracy is lower than the legacy's by more than MaxDrop (absolute, 0.05 =
// 5 percentage points) and a one-sided two-proportion z-test says the drop is
// significant at Alpha.
type AIConfig struct {
	MaxDrop    float64 // default 0.05
	Alpha      float64 // default 0.05
	MinSamples int64   // fewer labelled pairs never flag (default 30)
}

func (c AIConfig) withDefaults() AIConfig {
	if c.MaxDrop == 0 {
		c.MaxDrop = 0.05
	}
	if c.Alpha == 0 {
		c.Alpha = 0.05
	}
	if c.MinSamples == 0 {
		c.MinSamples = 30
	}
	return c
}

func (c AIConfig) validate() error {
	var errs []error
	if c.MaxDrop < 0 || c.MaxDrop >= 1 || math.IsNaN(c.MaxDrop) {
		errs = append(errs, fmt.Errorf("AI.MaxDrop %v: want 0 ≤ x < 1 (0 = default 0.05)", c.MaxDrop))
	}
	if c.Alpha < 0 || c.Alpha >= 1 || math.IsNaN(c.Alpha) {
		errs = append(errs, fmt.Errorf("AI.Alpha %v: want 0 < x < 1 (0 = default 0.05)", c.Alpha))
	}
	if c.MinSamples < 0 {
		errs = append(errs, fmt.Errorf("AI.MinSamples %d: want at least 1 (0 = default 30)", c.MinSamples))
	}
	return errors.Join(errs...)
}

// AICounts are the running counts of one AI route.
type AICounts struct {
	Pairs         int64   // pairs where both answers had a label
	Agree         int64   // same label
	ConfDiffSum   float64 // Σ |legacy confidence − cube confidence|
	ConfPairs     int64   // pairs where both had a confidence
	Labelled      int64   // pairs with a truth label
	LegacyCorrect int64
	CubeCorrect   int64
}

// Interval is a confidence interval of a proportion.
type Interval struct{ Lo, Hi float64 }

// AIReport is the statistical verdict on one AI route.
type AIReport struct {
	AICounts
	Agreement     float64
	MeanConfDiff  float64
	LegacyAcc     float64
	CubeAcc       float64
	LegacyCI      Interval // Wilson 95%
	CubeCI        Interval
	Drop          float64 // LegacyAcc − CubeAcc
	Z             float64 // two-proportion z (positive = cube worse)
	P             float64 // one-sided p-value for "cube worse"
	Flagged       bool    // drop > MaxDrop and P < Alpha
	FlaggedReason string
}

// Wilson returns the Wilson score interval of k successes in n trials at the
// normal quantile z (1.96 for 95%).
func Wilson(k, n int64, z float64) Interval {
	if n <= 0 {
		return Interval{0, 1}
	}
	p := float64(k) / float64(n)
	nf := float64(n)
	z2 := z * z
	den := 1 + z2/nf
	centre := (p + z2/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / den
	return Interval{math.Max(0, centre-half), math.Min(1, centre+half)}
}

// TwoProportionZ tests p1 = k1/n1 against p2 = k2/n2 with the pooled
// standard error; z > 0 when p1 > p2. pOne is the one-sided p-value of
// "p1 > p2", pTwo the two-sided one.
func TwoProportionZ(k1, n1, k2, n2 int64) (z, pOne, pTwo float64) {
	if n1 <= 0 || n2 <= 0 {
		return 0, 1, 1
	}
	p1, p2 := float64(k1)/float64(n1), float64(k2)/float64(n2)
	pool := float64(k1+k2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		if p1 == p2 {
			return 0, 0.5, 1
		}
		return math.Inf(1) * math.Copysign(1, p1-p2), 0, 0
	}
	z = (p1 - p2) / se
	pOne = 0.5 * math.Erfc(z/math.Sqrt2)
	pTwo = math.Erfc(math.Abs(z) / math.Sqrt2)
	return z, pOne, pTwo
}

// Evaluate computes the report of counts under the rule of cfg.
func (c AICounts) Evaluate(cfg AIConfig) AIReport {
	cfg = cfg.withDefaults()
	r := AIReport{AICounts: c}
	if c.Pairs > 0 {
		r.Agreement = float64(c.Agree) / float64(c.Pairs)
	}
	if c.ConfPairs > 0 {
		r.MeanConfDiff = c.ConfDiffSum / float64(c.ConfPairs)
	}
	if c.Labelled == 0 {
		return r
	}
	n := c.Labelled
	r.LegacyAcc = float64(c.LegacyCorrect) / float64(n)
	r.CubeAcc = float64(c.CubeCorrect) / float64(n)
	r.LegacyCI = Wilson(c.LegacyCorrect, n, 1.959964)
	r.CubeCI = Wilson(c.CubeCorrect, n, 1.959964)
	r.Drop = r.LegacyAcc - r.CubeAcc
	r.Z, r.P, _ = TwoProportionZ(c.LegacyCorrect, n, c.CubeCorrect, n)
	if n >= cfg.MinSamples && r.Drop > cfg.MaxDrop && r.P < cfg.Alpha {
		r.Flagged = true
		r.FlaggedReason = fmt.Sprintf("cube accuracy %.1f%% is %.1f pp below legacy %.1f%% (> %.1f pp, p=%.2g < %.2g, n=%d)",
			100*r.CubeAcc, 100*r.Drop, 100*r.LegacyAcc, 100*cfg.MaxDrop, r.P, cfg.Alpha, n)
	}
	return r
}
