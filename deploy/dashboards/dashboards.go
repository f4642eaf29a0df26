// Package dashboards generates shadowcube's Grafana dashboards (JSON model,
// schemaVersion 39) from Go: the pipeline overview and one dashboard per
// stage. The generated files live in deploy/grafana/dashboards, provisioned
// by deploy/grafana/provisioning; deploy's tests check that regenerating gives
// the committed files and that every PromQL expression names a metric the
// stages register.
//
// Regenerate with: go test ./deploy -run TestDashboardsUpToDate -update
package dashboards

import (
	"bytes"
	"encoding/json"
)

// DatasourceUID is the uid of the Prometheus datasource provisioned in
// deploy/grafana/provisioning/datasources.
const DatasourceUID = "shadowcube-prometheus"

// Query is one PromQL expression of a panel.
type Query struct {
	Expr   string
	Legend string
}

// Panel is a time series (or, with Stat, a single-value) panel.
type Panel struct {
	Title    string
	Unit     string // Grafana unit: reqps, s, bytes, percentunit, short, ...
	Stat     bool
	Width    int               // grid columns out of 24; 0 = 12
	Mappings map[string]string // value → text (stat and time series)
	Queries  []Query
}

// Row is a titled group of panels.
type Row struct {
	Title  string
	Panels []Panel
}

// Dashboard is one generated dashboard.
type Dashboard struct {
	UID   string
	Title string
	File  string // file name under deploy/grafana/dashboards
	Rows  []Row
}

// Exprs lists every PromQL expression of d.
func (d Dashboard) Exprs() []string {
	var out []string
	for _, r := range d.Rows {
		for _, p := range r.Panels {
			for _, q := range p.Queries {
				out = append(out, q.Expr)
			}
		}
	}
	return out
}

// JSON renders d as a Grafana dashboard model, indented, ending in a newline.
func (d Dashboard) JSON() ([]byte, error) {
	ds := map[string]string{"type": "prometheus", "uid": DatasourceUID}
	var panels []any
	id, y := 1, 0
	for _, r := range d.Rows {
		panels = append(panels, map[string]any{
			"id": id, "type": "row", "title": r.Title, "collapsed": false,
			"gridPos": map[string]int{"h": 1, "w": 24, "x": 0, "y": y},
			"panels":  []any{},
		})
		id++
		y++
		x, rowH := 0, 0
		for _, p := range r.Panels {
			w, h := p.Width, 8
			if w == 0 {
				w = 12
			}
			if p.Stat {
				h = 4
			}
			if x+w > 24 {
				x, y = 0, y+rowH
				rowH = 0
			}
			panels = append(panels, panel(p, id, ds, x, y, w, h))
			id++
			x += w
			rowH = max(rowH, h)
		}
		y += rowH
	}
	model := map[string]any{
		"uid":           d.UID,
		"title":         d.Title,
		"tags":          []string{"shadowcube"},
		"timezone":      "browser",
		"editable":      true,
		"schemaVersion": 39,
		"version":       1,
		"refresh":       "30s",
		"time":          map[string]string{"from": "now-6h", "to": "now"},
		"annotations":   map[string]any{"list": []any{}},
		"templating":    map[string]any{"list": []any{}},
		"links": []any{map[string]any{
			"type": "dashboards", "tags": []string{"shadowcube"}, "asDropdown": true, "title": "shadowcube",
		}},
		"panels": panels,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(model); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func panel(p Panel, id int, ds map[string]string, x, y, w, h int) map[string]any {
	var targets []any
	for i, q := range p.Queries {
		t := map[string]any{"refId": string(rune('A' + i)), "datasource": ds, "expr": q.Expr, "range": true}
		if q.Legend != "" {
			t["legendFormat"] = q.Legend
		}
		targets = append(targets, t)
	}
	defaults := map[string]any{"unit": p.Unit}
	if len(p.Mappings) > 0 {
		opts := map[string]any{}
		for v, text := range p.Mappings {
			opts[v] = map[string]any{"text": text}
		}
		defaults["mappings"] = []any{map[string]any{"type": "value", "options": opts}}
	}
	typ, options := "timeseries", map[string]any{
		"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
		"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
	}
	if p.Stat {
		typ, options = "stat", map[string]any{
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"colorMode":     "value", "graphMode": "area", "textMode": "auto",
		}
	}
	return map[string]any{
		"id": id, "type": typ, "title": p.Title, "datasource": ds,
		"gridPos":     map[string]int{"h": h, "w": w, "x": x, "y": y},
		"fieldConfig": map[string]any{"defaults": defaults, "overrides": []any{}},
		"options":     options,
		"targets":     targets,
	}
}
