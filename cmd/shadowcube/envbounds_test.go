package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/wiring"
)

// envStructs lists every environment struct of the commands, by type name;
// TestEveryNumericEnvFieldHasBounds fails when a struct with envconfig tags
// is missing here.
var envStructs = map[string]func() any{
	"Common":          func() any { return new(process.Common) },
	"CaptureEnv":      func() any { return new(wiring.CaptureEnv) },
	"TapEnv":          func() any { return new(wiring.TapEnv) },
	"SniffEnv":        func() any { return new(wiring.SniffEnv) },
	"CDCEnv":          func() any { return new(wiring.CDCEnv) },
	"SyncEnv":         func() any { return new(wiring.SyncEnv) },
	"RolloutEnv":      func() any { return new(wiring.RolloutEnv) },
	"ShadowEnv":       func() any { return new(wiring.ShadowEnv) },
	"CompareEnv":      func() any { return new(wiring.CompareEnv) },
	"MappingEnv":      func() any { return new(wiring.MappingEnv) },
	"ReconcileEnv":    func() any { return new(wiring.ReconcileEnv) },
	"LoadgenEnv":      func() any { return new(wiring.LoadgenEnv) },
	"DemoServiceEnv":  func() any { return new(wiring.DemoServiceEnv) },
	"AnalystStore":    func() any { return new(wiring.AnalystStore) },
	"AnalystAccepted": func() any { return new(wiring.AnalystAccepted) },
	"ReportEnv":       func() any { return new(wiring.ReportEnv) },
	"GateEnv":         func() any { return new(wiring.GateEnv) },
	"SharedStores":    func() any { return new(wiring.SharedStores) },
	"ServeEnv":        func() any { return new(wiring.ServeEnv) },
}

var numericIdents = map[string]bool{"int": true, "int8": true, "int16": true, "int32": true, "int64": true,
	"uint": true, "uint8": true, "uint16": true, "uint32": true, "uint64": true, "float32": true, "float64": true}

func isNumericExpr(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident:
		return numericIdents[x.Name]
	case *ast.StarExpr:
		return isNumericExpr(x.X)
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && id.Name == "time" && x.Sel.Name == "Duration"
	}
	return false
}

// TestEveryNumericEnvFieldHasBounds reads the source of the commands (and
// process.Common): every numeric field read from the environment, in every
// struct, named or not, carries a min or max tag, and every named env
// struct is listed in envStructs, so TestNegativeEnvNumbersRejected covers it.
func TestEveryNumericEnvFieldHasBounds(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	wiringFiles, err := filepath.Glob(filepath.Join("..", "..", "internal", "wiring", "*.go"))
	if err != nil || len(wiringFiles) == 0 {
		t.Fatalf("no wiring files: %v", err)
	}
	files = append(files, wiringFiles...)
	files = append(files, filepath.Join("..", "..", "internal", "process", "config.go"))
	fset := token.NewFileSet()
	checked := 0
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		named := map[*ast.StructType]string{}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					named[st] = ts.Name.Name
				}
			}
			st, ok := n.(*ast.StructType)
			if !ok {
				return true
			}
			hasEnv := false
			for _, fld := range st.Fields.List {
				if fld.Tag == nil || !strings.Contains(fld.Tag.Value, `envconfig:"`) {
					continue
				}
				hasEnv = true
				if !isNumericExpr(fld.Type) {
					continue
				}
				checked++
				tag := reflect.StructTag(strings.Trim(fld.Tag.Value, "`"))
				_, hasMin := tag.Lookup("min")
				_, hasMax := tag.Lookup("max")
				if !hasMin && !hasMax {
					t.Errorf("%s: numeric env field %s (%s) has no min/max tag", fset.Position(fld.Pos()), fld.Names[0].Name, tag.Get("envconfig"))
				}
			}
			if name, ok := named[st]; ok && hasEnv && envStructs[name] == nil {
				t.Errorf("%s: env struct %s is not listed in envStructs", fset.Position(st.Pos()), name)
			}
			return true
		})
	}
	if checked < 40 {
		t.Fatalf("only %d numeric env fields found: the source scan is broken", checked)
	}
}

type boundedField struct {
	key      string
	duration bool
	unsigned bool
	min      string
}

// boundedFields lists the tagged numeric fields of an env struct with the
// variable names envconfig reads them from.
func boundedFields(prefix string, typ reflect.Type) []boundedField {
	var out []boundedField
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			name = f.Name
		}
		key := strings.ToUpper(prefix + "_" + name)
		if f.Type.Kind() == reflect.Struct {
			inner := key
			if f.Anonymous {
				inner = prefix
			}
			out = append(out, boundedFields(inner, f.Type)...)
			continue
		}
		_, hasMin := f.Tag.Lookup("min")
		_, hasMax := f.Tag.Lookup("max")
		if !hasMin && !hasMax {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		out = append(out, boundedField{key: key, duration: ft == reflect.TypeFor[time.Duration](),
			unsigned: ft.Kind() >= reflect.Uint && ft.Kind() <= reflect.Uintptr, min: f.Tag.Get("min")})
	}
	return out
}

// TestNegativeEnvNumbersRejected: for every bounded numeric variable of
// every command, a negative value makes process.Load fail with an error
// naming the variable and the value (never a silent default), and the
// defaults themselves load.
func TestNegativeEnvNumbersRejected(t *testing.T) {
	total := 0
	for name, mk := range envStructs {
		t.Run(name, func(t *testing.T) {
			if err := process.Load(mk()); err != nil {
				t.Fatalf("defaults do not load: %v", err)
			}
			for _, f := range boundedFields(process.EnvPrefix, reflect.TypeOf(mk()).Elem()) {
				total++
				bad := "-5"
				if f.duration {
					bad = "-5s"
				} else if strings.HasPrefix(f.min, "-") {
					bad = "-100000" // below a negative minimum (e.g. a longitude's -180)
				}
				t.Run(f.key, func(t *testing.T) {
					t.Setenv(f.key, bad)
					err := process.Load(mk())
					if err == nil || !strings.Contains(err.Error(), f.key+`="`+bad+`"`) {
						t.Fatalf("%s=%s: Load = %v, want an error naming the variable and value", f.key, bad, err)
					}
					if !f.unsigned && !strings.Contains(err.Error(), "out of range: must be") {
						t.Fatalf("%s=%s: error %q does not give the allowed range", f.key, bad, err)
					}
				})
			}
		})
	}
	if total < 40 {
		t.Fatalf("only %d bounded variables found", total)
	}
}
