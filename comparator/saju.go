package comparator

import (
	"strings"
	"unicode/utf8"
)

// The ten heavenly stems and twelve earthly branches, Hanja and Hangul.
const (
	stemsHanja     = "甲乙丙丁戊己庚辛壬癸"
	stemsHangul    = "갑을병정무기경신임계"
	branchesHanja  = "子丑寅卯辰巳午未申酉戌亥"
	branchesHangul = "자축인묘진사오미신유술해"
)

var (
	stemHangulToHanja   = runeMap(stemsHangul, stemsHanja)
	branchHangulToHanja = runeMap(branchesHangul, branchesHanja)
	// elementNames maps Hanja and Hangul element names to the English ones.
	elementNames = map[string]string{
		"木": "wood", "火": "fire", "土": "earth", "金": "metal", "水": "water",
		"목": "wood", "화": "fire", "토": "earth", "금": "metal", "수": "water",
	}
	yinYangNames = map[string]string{"陽": "yang", "陰": "yin", "양": "yang", "음": "yin"}
	// tenGodNames maps Hanja ten-god names to the Hangul ones.
	tenGodNames = map[string]string{
		"比肩": "비견", "劫財": "겁재", "劫财": "겁재", "食神": "식신", "傷官": "상관", "伤官": "상관",
		"偏財": "편재", "偏财": "편재", "正財": "정재", "正财": "정재", "偏官": "편관", "七殺": "편관",
		"七杀": "편관", "正官": "정관", "偏印": "편인", "正印": "정인",
	}
)

func runeMap(from, to string) map[rune]rune {
	m := map[rune]rune{}
	f, t := []rune(from), []rune(to)
	for i := range f {
		m[f[i]] = t[i]
	}
	return m
}

// NormalizeGanji returns a stem+branch pair (甲子 or 갑자) in Hanja; a single
// stem (庚 or 경) likewise. Other strings come back trimmed and unchanged.
// Position matters: 신 is the stem 辛 first and the branch 申 second.
func NormalizeGanji(s string) string {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	if n != 1 && n != 2 {
		return s
	}
	r0, size := utf8.DecodeRuneInString(s)
	h0, ok0 := stemHangulToHanja[r0]
	if n == 1 {
		if !ok0 {
			return s
		}
		return string(h0)
	}
	r1, _ := utf8.DecodeRuneInString(s[size:])
	h1, ok1 := branchHangulToHanja[r1]
	if !ok0 && !ok1 {
		return s // already Hanja (or not a pillar): no allocation
	}
	if ok0 {
		r0 = h0
	}
	if ok1 {
		r1 = h1
	}
	var buf [8]byte
	b := utf8.AppendRune(buf[:0], r0)
	b = utf8.AppendRune(b, r1)
	return string(b)
}

func normalizeWith(m map[string]string, s string) string {
	t := strings.TrimSpace(s)
	if v, ok := m[t]; ok {
		return v
	}
	return strings.ToLower(t)
}

// normalizeSaju rewrites, in place, the fields of a decoded saju answer that
// services may print in Hanja or Hangul, so both forms compare equal.
func normalizeSaju(doc any) {
	m, ok := doc.(map[string]any)
	if !ok {
		return
	}
	if p, ok := m["pillars"].(map[string]any); ok {
		for k, v := range p {
			if s, ok := v.(string); ok {
				setIfChanged(p, k, s, NormalizeGanji(s))
			}
		}
	}
	if dm, ok := m["day_master"].(map[string]any); ok {
		if s, ok := dm["stem"].(string); ok {
			setIfChanged(dm, "stem", s, NormalizeGanji(s))
		}
		if s, ok := dm["element"].(string); ok {
			setIfChanged(dm, "element", s, normalizeWith(elementNames, s))
		}
		if s, ok := dm["yin_yang"].(string); ok {
			setIfChanged(dm, "yin_yang", s, normalizeWith(yinYangNames, s))
		}
	}
	if el, ok := m["elements"].(map[string]any); ok {
		for k, v := range el {
			if n, ok := elementNames[k]; ok {
				delete(el, k)
				el[n] = v
			}
		}
	}
	if tg, ok := m["ten_gods"].(map[string]any); ok {
		for k, v := range tg {
			if s, ok := v.(string); ok {
				if h, ok := tenGodNames[strings.TrimSpace(s)]; ok {
					tg[k] = h
				} else {
					setIfChanged(tg, k, s, strings.TrimSpace(s))
				}
			}
		}
	}
	if l, ok := m["luck"].(map[string]any); ok {
		if ps, ok := l["pillars"].([]any); ok {
			for i, v := range ps {
				if s, ok := v.(string); ok {
					if n := NormalizeGanji(s); n != s {
						ps[i] = n
					}
				}
			}
		}
		if s, ok := l["direction"].(string); ok {
			setIfChanged(l, "direction", s, strings.ToLower(strings.TrimSpace(s)))
		}
	}
}

func setIfChanged(m map[string]any, k, old, new string) {
	if old != new {
		m[k] = new
	}
}
