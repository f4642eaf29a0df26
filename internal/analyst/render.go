package analyst

import (
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// Funcs are the template functions the report's templates use; a web UI
// that adds its own templates to Templates() gets them too.
var Funcs = template.FuncMap{
	"pct":    func(x float64) string { return fmt.Sprintf("%.3f%%", 100*x) },
	"ms":     func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) },
	"raw":    func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) },
	"num":    num,
	"mul100": func(x float64) float64 { return 100 * x },
	"ts":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
	"join":   strings.Join,
	"trend":  trendChart,
	"anchor": func(a, b string) string { return anchor(a + "-" + b) },
	"class":  func(result string) string { return strings.ReplaceAll(result, " ", "") },
}

var templates = template.Must(template.New("analyst").Funcs(Funcs).ParseFS(templateFS, "templates/*.tmpl"))

// Templates returns a copy of the report's template set, for a web UI to
// render the same sections (and add its own templates). Named templates:
// "report" (a whole page: *Figures), "style" (the CSS), "sections" (the
// body of a report: *Figures), "service" (Service), "gate" (GateVerdict),
// "stats-head" and "stats-row" (the routes table: Route), "route" (Route),
// "trend" (the chart of trend .Trend), "signature" (Signature), "example"
// (Example).
func Templates() *template.Template { return template.Must(templates.Clone()) }

// WriteHTML writes the report as one self-contained HTML page: no
// external assets, inline SVG charts, UTF-8, Korean-capable font stack.
// Every value is escaped by html/template (a body holding <script>
// renders as text).
func WriteHTML(w io.Writer, f *Figures) error {
	return templates.ExecuteTemplate(w, "report", f)
}

// RenderSections writes the report's body (no <html> wrapper, no CSS) for
// embedding in another page; the page must include the "style" template.
func RenderSections(w io.Writer, f *Figures) error {
	return templates.ExecuteTemplate(w, "sections", f)
}

// WriteJSON writes the figures as one JSON document.
func WriteJSON(w io.Writer, f *Figures) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func anchor(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func f64(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
func i64(x int64) string   { return strconv.FormatInt(x, 10) }

// StatsHeader and statsRecord are the columns of services.csv and routes.csv.
var StatsHeader = []string{"pairs", "skipped", "matches", "noise_only", "moved_on", "mismatches", "accepted", "open", "cube_errors", "stale",
	"match_rate", "match_ci_lo", "match_ci_hi", "open_rate", "open_ci_lo", "open_ci_hi", "error_rate", "stale_share",
	"legacy_n", "legacy_mean_ms", "legacy_p50_ms", "legacy_p95_ms", "cube_n", "cube_mean_ms", "cube_p50_ms", "cube_p95_ms"}

func statsRecord(s Stats) []string {
	return []string{i64(s.Pairs), i64(s.Skipped), i64(s.Matches), i64(s.Noise), i64(s.MovedOn), i64(s.Mismatches), i64(s.Accepted), i64(s.Open),
		i64(s.Errors), i64(s.Stale), f64(s.MatchRate), f64(s.MatchCI.Lo), f64(s.MatchCI.Hi), f64(s.OpenRate), f64(s.OpenCI.Lo), f64(s.OpenCI.Hi),
		f64(s.ErrorRate), f64(s.StaleShare), i64(s.Legacy.N), f64(s.Legacy.Mean), f64(s.Legacy.P50), f64(s.Legacy.P95),
		i64(s.Cube.N), f64(s.Cube.Mean), f64(s.Cube.P50), f64(s.Cube.P95)}
}

// CSVFiles are the files WriteCSV writes, one table each.
var CSVFiles = []string{"services.csv", "routes.csv", "trend.csv", "paths.csv", "causes.csv", "signatures.csv", "examples.csv", "ai.csv", "gate.csv", "gate_groups.csv"}

// WriteCSV writes one CSV file per table into dir (created when missing):
// CSVFiles. Numbers are written in full precision, as in the JSON export
// and the HTML's data-v attributes.
func WriteCSV(dir string, f *Figures) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("csv export: %w", err)
	}
	tables := map[string][][]string{}
	put := func(name string, rec ...string) { tables[name] = append(tables[name], rec) }
	put("services.csv", append([]string{"service", "gate_verdict"}, StatsHeader...)...)
	put("routes.csv", append([]string{"service", "route", "kind"}, StatsHeader...)...)
	put("trend.csv", "service", "route", "hour", "pairs", "open", "match_rate")
	put("paths.csv", "service", "route", "path", "pairs", "share")
	put("causes.csv", "service", "route", "cause", "count", "open", "share")
	put("signatures.csv", "service", "route", "signature", "verdict", "causes", "count", "open", "accepted", "accepted_reason", "examples")
	put("examples.csv", "service", "route", "signature", "request_id", "method", "path", "compared_at", "diff_paths", "legacy_status", "cube_status", "cube_error")
	put("ai.csv", "service", "route", "pairs", "agree", "agreement", "mean_confidence_diff", "labelled", "legacy_correct", "cube_correct",
		"legacy_accuracy", "legacy_ci_lo", "legacy_ci_hi", "cube_accuracy", "cube_ci_lo", "cube_ci_hi", "drop", "z", "p", "flagged", "verdict")
	put("gate.csv", "service", "criterion", "group", "subject", "measured", "measured_text", "threshold", "result", "detail")
	put("gate_groups.csv", "service", "group", "score", "result", "checks", "passed", "verdict")
	for _, svc := range f.Services {
		verdict := ""
		if svc.Gate != nil {
			verdict = svc.Gate.Verdict
		}
		put("services.csv", append([]string{svc.Service, verdict}, statsRecord(svc.Total)...)...)
		for _, r := range svc.Routes {
			put("routes.csv", append([]string{r.Service, r.Route, r.Kind}, statsRecord(r.Stats)...)...)
			for _, t := range r.Trend {
				put("trend.csv", r.Service, r.Route, t.Hour.UTC().Format(time.RFC3339), i64(t.Pairs), i64(t.Open), f64(t.MatchRate))
			}
			for _, p := range r.Paths {
				put("paths.csv", r.Service, r.Route, p.Path, i64(p.Pairs), f64(p.Share))
			}
			for _, c := range r.Causes {
				put("causes.csv", r.Service, r.Route, c.Cause, i64(c.Count), i64(c.Open), f64(c.Share))
			}
			for _, list := range [][]Signature{r.Signatures, r.Accepted} {
				for _, sg := range list {
					var ids []string
					for _, e := range sg.Examples {
						ids = append(ids, e.RequestID)
						put("examples.csv", r.Service, r.Route, sg.Signature, e.RequestID, e.Method, e.Path, e.ComparedAt.UTC().Format(time.RFC3339Nano),
							strings.Join(e.DiffPaths, " "), strconv.Itoa(e.Legacy.Status), strconv.Itoa(e.Cube.Status), e.Cube.Error)
					}
					put("signatures.csv", r.Service, r.Route, sg.Signature, sg.Verdict, strings.Join(sg.Causes, "+"), i64(sg.Count), i64(sg.Open),
						strconv.FormatBool(sg.Accepted), sg.Reason, strings.Join(ids, " "))
				}
			}
			if a := r.AI; a != nil {
				put("ai.csv", r.Service, r.Route, i64(a.Pairs), i64(a.Agree), f64(a.Agreement), f64(a.MeanConfDiff), i64(a.Labelled),
					i64(a.LegacyCorrect), i64(a.CubeCorrect), f64(a.LegacyAcc), f64(a.LegacyCI.Lo), f64(a.LegacyCI.Hi), f64(a.CubeAcc),
					f64(a.CubeCI.Lo), f64(a.CubeCI.Hi), f64(a.Drop), f64(a.Z), f64(a.P), strconv.FormatBool(a.Flagged), a.Verdict)
			}
		}
	}
	if f.Gate != nil {
		for _, v := range f.Gate.Services {
			for _, ch := range v.Checks {
				put("gate.csv", v.Service, ch.Criterion, ch.Group, ch.Subject, f64(ch.Measured), ch.Shown, ch.Threshold, ch.Result, ch.Detail)
			}
			for _, g := range v.Groups {
				put("gate_groups.csv", v.Service, g.Group, f64(g.Score), g.Result, strconv.Itoa(g.Checks), strconv.Itoa(g.Passed), v.Verdict)
			}
		}
	}
	for _, name := range CSVFiles {
		if err := writeCSVFile(filepath.Join(dir, name), tables[name]); err != nil {
			return err
		}
	}
	return nil
}

func writeCSVFile(path string, recs [][]string) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("csv export: %w", err)
	}
	w := csv.NewWriter(fh)
	if err := w.WriteAll(recs); err != nil {
		fh.Close()
		return fmt.Errorf("csv export %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("csv export %s: %w", path, err)
	}
	return nil
}
