package process

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// checkBounds enforces the `min:"N"` and `max:"N"` tags of the numeric
// fields of spec (ints, uints, floats, time.Duration, and pointers to them;
// durations are written like "1s"; min:">N" and max:"<N" exclude N), as
// read by envconfig under prefix. A
// value out of range is an *EnvError naming the variable, the value and the
// allowed range: a bad number is never replaced by a default.
func checkBounds(prefix string, spec any) error {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil // envconfig already refused it
	}
	return walkBounds(prefix, v.Elem())
}

var durationType = reflect.TypeFor[time.Duration]()

func walkBounds(prefix string, s reflect.Value) error {
	var errs []error
	t := s.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("ignored") == "true" {
			continue
		}
		name := f.Tag.Get("envconfig")
		alt := strings.ToUpper(name)
		if name == "" {
			name = f.Name
		}
		key := strings.ToUpper(name)
		if prefix != "" {
			key = strings.ToUpper(prefix + "_" + name)
		}
		fv := s.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
			inner := key
			if f.Anonymous {
				inner = prefix
			}
			errs = append(errs, walkBounds(inner, fv))
			continue
		}
		minTag, hasMin := f.Tag.Lookup("min")
		maxTag, hasMax := f.Tag.Lookup("max")
		if !hasMin && !hasMax {
			continue
		}
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		if err := checkField(key, alt, f.Name, fv, minTag, hasMin, maxTag, hasMax); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkField(key, alt, field string, v reflect.Value, minTag string, hasMin bool, maxTag string, hasMax bool) error {
	// compare as float64 (exact for every bound and value shadowcube uses)
	var val float64
	parse := func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
	show := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	switch {
	case v.Type() == durationType:
		val = float64(v.Int())
		parse = func(s string) (float64, error) {
			d, err := time.ParseDuration(s)
			return float64(d), err
		}
		show = func(f float64) string { return time.Duration(f).String() }
	case v.CanInt():
		val = float64(v.Int())
	case v.CanUint():
		val = float64(v.Uint())
	case v.CanFloat():
		val = v.Float()
	default:
		return fmt.Errorf("read environment: field %s (%s): min/max tags on a %s, want a number or duration", field, key, v.Type())
	}
	// ">N" and "<N" are exclusive bounds.
	minTag, minExcl := strings.CutPrefix(minTag, ">")
	maxTag, maxExcl := strings.CutPrefix(maxTag, "<")
	lo, hi := 0.0, 0.0
	var err error
	if hasMin {
		if lo, err = parse(minTag); err != nil {
			return fmt.Errorf("read environment: field %s: bad min tag %q: %w", field, minTag, err)
		}
	}
	if hasMax {
		if hi, err = parse(maxTag); err != nil {
			return fmt.Errorf("read environment: field %s: bad max tag %q: %w", field, maxTag, err)
		}
	}
	okLo := !hasMin || val > lo || (!minExcl && val == lo)
	okHi := !hasMax || val < hi || (!maxExcl && val == hi)
	if okLo && okHi {
		return nil
	}
	var parts []string
	if hasMin {
		parts = append(parts, map[bool]string{false: "at least ", true: "greater than "}[minExcl]+show(lo))
	}
	if hasMax {
		parts = append(parts, map[bool]string{false: "at most ", true: "less than "}[maxExcl]+show(hi))
	}
	msg := "out of range: must be " + strings.Join(parts, " and ")
	name, raw := key, show(val)
	if s, ok := os.LookupEnv(key); ok {
		raw = s
	} else if s, ok := os.LookupEnv(alt); ok && alt != "" {
		name, raw = alt, s
	} else {
		msg += " (the default is out of range)"
	}
	return &EnvError{Var: name, Value: raw, Msg: msg}
}
