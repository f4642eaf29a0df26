package wiring

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/heal7/shadowcube/internal/process"
)

// The configuration of every command is one struct whose fields carry:
//
//	envconfig:"CDC_SLOT"   the variable SHADOWCUBE_CDC_SLOT
//	default:"shadowcube"   its default
//	min:"1" max:"5"        bounds of a number or duration (process.Load)
//	desc:"..."             one line of help (EnvHelp, and the flag's usage)
//	flag:"slot"            a flag that overrides the variable (BindFlags, Load)
//
// A field with a flag tag and no envconfig tag is a flag only. This is the
// one way flags override environment variables, and the one source of the
// help text of both.

// FlagError names a flag with a bad value (a usage error, exit status 2).
type FlagError struct {
	Flag  string
	Value string
	Msg   string
}

func (e *FlagError) Error() string { return fmt.Sprintf("--%s %s: %s", e.Flag, e.Value, e.Msg) }

// field is one tagged leaf field of a config struct.
type field struct {
	sf  reflect.StructField
	v   reflect.Value // settable when walked from a pointer
	key string        // SHADOWCUBE_... ("" for a flag-only field)
}

// fields walks spec (a pointer to a struct), embedded and nested structs
// included, as envconfig does.
func fields(spec any) []field {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("wiring: config spec %T is not a pointer to a struct", spec))
	}
	var out []field
	var walk func(prefix string, s reflect.Value)
	walk = func(prefix string, s reflect.Value) {
		t := s.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			fv := s.Field(i)
			name, hasEnv := sf.Tag.Lookup("envconfig")
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeFor[time.Time]() {
				inner := prefix
				if !sf.Anonymous {
					inner = prefix + "_" + strings.ToUpper(name)
				}
				walk(inner, fv)
				continue
			}
			key := ""
			if hasEnv {
				key = prefix + "_" + strings.ToUpper(name)
			}
			if key == "" && sf.Tag.Get("flag") == "" {
				continue
			}
			out = append(out, field{sf: sf, v: fv, key: key})
		}
	}
	walk(process.EnvPrefix, v.Elem())
	return out
}

// flagValue holds what a flag was given until Load applies it.
type flagValue struct {
	typ reflect.Type
	raw []string
}

func (f *flagValue) String() string {
	if len(f.raw) == 0 {
		return ""
	}
	return f.raw[len(f.raw)-1]
}

func (f *flagValue) Set(s string) error {
	if _, err := parseValue(f.typ, []string{s}); err != nil {
		return err
	}
	f.raw = append(f.raw, s)
	return nil
}

func (f *flagValue) Type() string {
	t := f.typ
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() == reflect.Slice:
		return "strings"
	case t.Kind() == reflect.Bool:
		return "bool"
	}
	return t.Kind().String()
}

// BindFlags registers a flag for every field of spec with a flag tag; its
// usage is the desc tag and the variable it overrides.
func BindFlags(fs *pflag.FlagSet, spec any) {
	for _, f := range fields(spec) {
		name := f.sf.Tag.Get("flag")
		if name == "" {
			continue
		}
		usage := f.sf.Tag.Get("desc")
		if f.key != "" {
			usage += " (" + f.key + ")"
		}
		fs.Var(&flagValue{typ: f.sf.Type}, name, usage)
		fl := fs.Lookup(name)
		fl.DefValue = f.sf.Tag.Get("default")
		if f.sf.Type.Kind() == reflect.Bool {
			fl.NoOptDefVal = "true"
		}
	}
}

// Load reads spec's variables (process.Load: types and bounds checked,
// errors name the variable), then applies every flag of fs that was set,
// and checks the bounds of those values (errors name the flag). fs may be
// nil (no flags). Flag-only fields take their default tag first, never a
// variable.
func Load(spec any, fs *pflag.FlagSet) error {
	if err := process.Load(spec); err != nil {
		return err
	}
	var errs []error
	for _, f := range fields(spec) {
		name := f.sf.Tag.Get("flag")
		if f.key == "" {
			// A flag-only field is never read from the environment
			// (envconfig would read one under the field's name): its
			// default, or its zero value, until its flag is given.
			f.v.Set(reflect.Zero(f.sf.Type))
			if d, ok := f.sf.Tag.Lookup("default"); ok {
				x, err := parseValue(f.sf.Type, []string{d})
				if err != nil {
					panic(fmt.Sprintf("wiring: field %s: bad default %q: %v", f.sf.Name, d, err))
				}
				f.v.Set(x)
			}
		}
		if name == "" || fs == nil || !fs.Changed(name) {
			if f.key == "" {
				errs = append(errs, checkFlagBounds(f, name))
			}
			continue
		}
		fv, ok := fs.Lookup(name).Value.(*flagValue)
		if !ok {
			continue
		}
		x, err := parseValue(f.sf.Type, fv.raw)
		if err != nil {
			errs = append(errs, &FlagError{Flag: name, Value: fv.String(), Msg: err.Error()})
			continue
		}
		f.v.Set(x)
		errs = append(errs, checkFlagBounds(f, name))
	}
	return errors.Join(errs...)
}

func parseValue(t reflect.Type, raw []string) (reflect.Value, error) {
	if t.Kind() == reflect.Pointer { // optional value: set when given
		x, err := parseValue(t.Elem(), raw)
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(x)
		return p, nil
	}
	v := reflect.New(t).Elem()
	last := ""
	if len(raw) > 0 {
		last = raw[len(raw)-1]
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(last)
		if err != nil {
			return v, errors.New("want a duration like 30s")
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var out []string
		for _, r := range raw {
			out = append(out, SplitList(r)...)
		}
		v.Set(reflect.ValueOf(out))
	case t.Kind() == reflect.String:
		v.SetString(last)
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(last)
		if err != nil {
			return v, errors.New("want true or false")
		}
		v.SetBool(b)
	case v.CanInt():
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil {
			return v, errors.New("want an integer")
		}
		v.SetInt(n)
	case v.CanUint():
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return v, errors.New("want a non-negative integer")
		}
		v.SetUint(n)
	case v.CanFloat():
		n, err := strconv.ParseFloat(last, 64)
		if err != nil {
			return v, errors.New("want a number")
		}
		v.SetFloat(n)
	default:
		return v, fmt.Errorf("unsupported flag type %s", t)
	}
	return v, nil
}

// checkFlagBounds checks the min/max tags of a value a flag (or a flag-only
// default) set: process.Load checked only the environment.
func checkFlagBounds(f field, name string) error {
	minTag, hasMin := f.sf.Tag.Lookup("min")
	maxTag, hasMax := f.sf.Tag.Lookup("max")
	if !hasMin && !hasMax {
		return nil
	}
	if f.v.Kind() == reflect.Pointer {
		if f.v.IsNil() {
			return nil
		}
		f.v = f.v.Elem()
	}
	var val, lo, hi float64
	show := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	parse := func(s string) float64 { x, _ := strconv.ParseFloat(s, 64); return x }
	if f.v.Type() == reflect.TypeFor[time.Duration]() {
		show = func(x float64) string { return time.Duration(x).String() }
		parse = func(s string) float64 { d, _ := time.ParseDuration(s); return float64(d) }
		val = float64(f.v.Int())
	} else if f.v.CanInt() {
		val = float64(f.v.Int())
	} else if f.v.CanUint() {
		val = float64(f.v.Uint())
	} else if f.v.CanFloat() {
		val = f.v.Float()
	} else {
		return nil
	}
	minTag, minExcl := strings.CutPrefix(minTag, ">")
	maxTag, maxExcl := strings.CutPrefix(maxTag, "<")
	lo, hi = parse(minTag), parse(maxTag)
	var msg []string
	if hasMin && (val < lo || (minExcl && val == lo)) || hasMax && (val > hi || (maxExcl && val == hi)) {
		if hasMin {
			msg = append(msg, map[bool]string{false: "at least ", true: "greater than "}[minExcl]+show(lo))
		}
		if hasMax {
			msg = append(msg, map[bool]string{false: "at most ", true: "less than "}[maxExcl]+show(hi))
		}
		if name == "" {
			name = strings.ToLower(f.sf.Name)
		}
		return &FlagError{Flag: name, Value: show(val), Msg: "must be " + strings.Join(msg, " and ")}
	}
	return nil
}

// EnvHelp renders the variables of specs from their desc tags, one entry
// per variable: name, description, default and the flag that overrides it.
// Fields without an envconfig tag (flags only) are listed under "Flags".
func EnvHelp(title string, specs ...any) string {
	var env, flags strings.Builder
	for _, spec := range specs {
		for _, f := range fields(spec) {
			desc := f.sf.Tag.Get("desc")
			if d := f.sf.Tag.Get("default"); d != "" {
				desc += " (default " + d + ")"
			}
			if name := f.sf.Tag.Get("flag"); name != "" {
				if f.key == "" {
					fmt.Fprintf(&flags, "  --%-26s %s\n", name, desc)
					continue
				}
				desc += " [--" + name + "]"
			}
			if f.key != "" {
				writeEntry(&env, f.key, desc)
			}
		}
	}
	var b strings.Builder
	if flags.Len() > 0 {
		b.WriteString("\n\nFlags:\n" + strings.TrimRight(flags.String(), "\n"))
	}
	if env.Len() > 0 {
		b.WriteString("\n\n" + title + ":\n" + strings.TrimRight(env.String(), "\n"))
	}
	return b.String()
}

// writeEntry writes "  NAME  description", wrapping the description at
// about 100 columns under a fixed indent.
func writeEntry(b *strings.Builder, name, desc string) {
	const indent = 34
	line := "  " + name
	if len(line) < indent-1 {
		line += strings.Repeat(" ", indent-len(line))
	} else {
		b.WriteString(line + "\n")
		line = strings.Repeat(" ", indent)
	}
	for _, w := range strings.Fields(desc) {
		if len(line)+len(w) > 104 && len(strings.TrimSpace(line)) > 0 && len(line) > indent {
			b.WriteString(line + "\n")
			line = strings.Repeat(" ", indent)
		}
		if len(line) > indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
}

// SplitList splits a comma-separated value, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
