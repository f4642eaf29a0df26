package demo

import (
	"fmt"
	"strings"
)

// Stems are the ten heavenly stems in Hanja, index 0 = 甲.
var stemsHanja = [10]string{"甲", "乙", "丙", "丁", "戊", "己", "庚", "辛", "壬", "癸"}
var stemsHangul = [10]string{"갑", "을", "병", "정", "무", "기", "경", "신", "임", "계"}

var branchesHanja = [12]string{"子", "丑", "寅", "卯", "辰", "巳", "午", "未", "申", "酉", "戌", "亥"}
var branchesHangul = [12]string{"자", "축", "인", "묘", "진", "사", "오", "미", "신", "유", "술", "해"}

// Elements in the fixed order used for counts and tie-breaking.
var elementNames = [5]string{"wood", "fire", "earth", "metal", "water"}

// branchElement is the main element of each branch (子 water ... 亥 water).
var branchElement = [12]int{4, 2, 0, 0, 2, 1, 1, 2, 3, 3, 2, 4}

// stemElement: 甲乙 wood, 丙丁 fire, 戊己 earth, 庚辛 metal, 壬癸 water.
func stemElement(s int) int { return s / 2 }

// tenGodNames indexed by [sameYinYang? 0 : 1] per relation, see tenGod.
var tenGodNames = map[string][2]string{
	"same":     {"비견", "겁재"},
	"output":   {"식신", "상관"},
	"wealth":   {"편재", "정재"},
	"officer":  {"편관", "정관"},
	"resource": {"편인", "정인"},
}

// pillar is one stem-branch pair.
type pillar struct{ Stem, Branch int }

func (p pillar) hanja() string  { return stemsHanja[p.Stem] + branchesHanja[p.Branch] }
func (p pillar) hangul() string { return stemsHangul[p.Stem] + branchesHangul[p.Branch] }

// text renders the pillar in the given script.
func (p pillar) text(s Script) string {
	if s == Hangul {
		return p.hangul()
	}
	return p.hanja()
}

// Script is how a service prints stems and branches.
type Script int

const (
	// Hanja prints 甲子 (the legacy service).
	Hanja Script = iota
	// Hangul prints 갑자 (the cube).
	Hangul
)

func stemIndex(s string) (int, bool) {
	for i := range stemsHanja {
		if s == stemsHanja[i] || s == stemsHangul[i] {
			return i, true
		}
	}
	return 0, false
}

func branchIndex(s string) (int, bool) {
	for i := range branchesHanja {
		if s == branchesHanja[i] || s == branchesHangul[i] {
			return i, true
		}
	}
	return 0, false
}

// parsePillar reads a two-character pillar in Hanja or Hangul (甲子 / 갑자).
func parsePillar(s string) (pillar, error) {
	r := []rune(strings.TrimSpace(s))
	if len(r) != 2 {
		return pillar{}, fmt.Errorf("pillar %q: want two characters (stem, branch)", s)
	}
	st, ok1 := stemIndex(string(r[0]))
	br, ok2 := branchIndex(string(r[1]))
	if !ok1 || !ok2 {
		return pillar{}, fmt.Errorf("pillar %q: unknown stem or branch", s)
	}
	if st%2 != br%2 {
		return pillar{}, fmt.Errorf("pillar %q: not one of the 60 sexagenary pairs", s)
	}
	return pillar{st, br}, nil
}

// tenGod names the relation of stem other to the day master dm.
func tenGod(dm, other int) string {
	de, oe := stemElement(dm), stemElement(other)
	same := dm%2 == other%2
	idx := 1
	if same {
		idx = 0
	}
	var rel string
	switch (oe - de + 5) % 5 {
	case 0:
		rel = "same"
	case 1: // day master produces other
		rel = "output"
	case 2: // day master controls other
		rel = "wealth"
	case 3: // other controls day master
		rel = "officer"
	case 4: // other produces day master
		rel = "resource"
	}
	return tenGodNames[rel][idx]
}

// ToHangul rewrites every Hanja stem or branch in s as Hangul (and leaves
// everything else alone); ToHanja does the reverse. Note 申 and 辛 are both
// 신 in Hangul, so ToHanja is only exact on whole pillars (see parsePillar).
func ToHangul(s string) string {
	var b strings.Builder
	for _, r := range s {
		c := string(r)
		if i, ok := stemIndex(c); ok && c == stemsHanja[i] {
			b.WriteString(stemsHangul[i])
		} else if i, ok := branchIndex(c); ok && c == branchesHanja[i] {
			b.WriteString(branchesHangul[i])
		} else {
			b.WriteString(c)
		}
	}
	return b.String()
}
