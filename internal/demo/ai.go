package demo

import (
	"fmt"
	"hash/fnv"
	"math"
)

// Labels are the AI services' fixed label set: the five elements.
var Labels = elementNames

// dominant is the reference rule: the element with the most characters in
// the chart; ties go to the day master's element, then to the month
// branch's element, then to the first in wood, fire, earth, metal, water.
func dominant(ch Chart) int {
	s := elementScores(ch)
	best := 0
	for e := 1; e < 5; e++ {
		if s[e] > s[best] {
			best = e
		}
	}
	return best
}

// elementScores are the counts plus tie-breaking bonuses small enough never
// to beat a whole character: 0.1 for the day master's element and 0.05 for
// the month branch's element.
func elementScores(ch Chart) [5]float64 {
	n := ch.Elements()
	var s [5]float64
	for e := range s {
		s[e] = float64(n[e])
	}
	s[stemElement(ch.Day.Stem)] += 0.1
	s[branchElement[ch.Month.Branch]] += 0.05
	return s
}

// TruthLabel is the reference (truth) label of a chart: its dominant element
// by the rule of dominant. The traffic generator attaches it as X-Truth-Label.
func TruthLabel(ch Chart) string { return elementNames[dominant(ch)] }

// Model is a deterministic dominant-element classifier with a controlled
// error: for a chart whose key hashes into the lowest ErrorRate share of the
// hash space, it answers the runner-up element instead of the dominant one.
// Legacy and cube models hash the same key, so the cube (with the larger
// rate) errs on a superset of the legacy's charts: the accuracy gap is
// exactly the difference of the rates (in expectation over charts), and the
// two disagree on that share only.
type Model struct {
	ErrorRate float64 // 0..1
}

// Prediction is a model answer.
type Prediction struct {
	Label      string
	Confidence float64
	Text       string
}

// Predict classifies ch.
func (m Model) Predict(ch Chart) Prediction {
	s := elementScores(ch)
	order := [5]int{0, 1, 2, 3, 4}
	for i := 1; i < 5; i++ { // insertion sort, descending score
		for j := i; j > 0 && s[order[j]] > s[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	top, second := order[0], order[1]
	total := 0.0
	for _, v := range s {
		total += v
	}
	margin := (s[top] - s[second]) / total
	label := top
	conf := 0.55 + 0.44*math.Min(1, 3*margin)
	if chartHash(ch) < m.ErrorRate {
		label = second
		conf = 0.35 + 0.2*math.Min(1, 3*margin)
	}
	other := second
	if label == second {
		other = top
	}
	return Prediction{
		Label:      elementNames[label],
		Confidence: math.Round(conf*1000) / 1000,
		Text: fmt.Sprintf("The chart leans to %s (%.0f of %.0f characters); %s follows.",
			elementNames[label], math.Floor(s[label]), math.Floor(total), elementNames[other]),
	}
}

// chartHash maps a chart to [0,1) by FNV-1a of its Hanja pillars.
func chartHash(ch Chart) float64 {
	h := fnv.New64a()
	for _, p := range ch.pillars() {
		h.Write([]byte(p.hanja()))
	}
	if ch.Hour == nil {
		h.Write([]byte("-"))
	}
	return float64(h.Sum64()>>11) / float64(1<<53)
}
