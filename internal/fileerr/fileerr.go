// Package fileerr is the one error type of shadowcube's YAML files (routes,
// mapping, accepted signatures): the file, the line, the field and what is
// wrong, printed "file:line: field: message" so editors jump to the place.
package fileerr

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem at a place in a file.
type Error struct {
	File  string
	Line  int
	Field string // where in the file, e.g. services[0].routes[1].compare or "target c: table public.a"; may be empty
	Msg   string
}

// Error returns "file:line: field: msg", or "file:line: msg" without a field.
func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Read reads the file at path and hands its content to parse, which names
// the file by path in its errors.
func Read[T any](path, what string, parse func(name string, data []byte) (T, error)) (T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("read %s: %w", what, err)
	}
	return parse(path, data)
}

// Document decodes data as one YAML document and returns its root node. A
// file without a document (empty, blanks or comments only) is an *Error
// "file is empty; want <want>" at line 1, invalid YAML an *Error at the line
// the parser names.
func Document(name string, data []byte, want string) (*yaml.Node, error) {
	var doc yaml.Node
	err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0) {
		return nil, &Error{File: name, Line: 1, Msg: "file is empty; want " + want}
	}
	if err != nil {
		return nil, YAML(name, err)
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`line (\d+):`)

// YAML turns an error of the YAML parser or decoder into an *Error at the
// first line it names (1 when it names none).
func YAML(name string, err error) *Error {
	line := 1
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	msg := strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n ", ""), "yaml: ")
	return &Error{File: name, Line: line, Msg: "invalid YAML: " + msg}
}
