package fileerr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestErrorText(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "r.yaml", Line: 3, Field: "services[0].name", Msg: "required"}, "r.yaml:3: services[0].name: required"},
		{Error{File: "m.yaml", Line: 1, Msg: "file is empty"}, "m.yaml:1: file is empty"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

// TestDocument: empty, comment-only and invalid files are *Errors naming
// file and line; a good file gives its root mapping.
func TestDocument(t *testing.T) {
	for _, c := range []struct {
		data, want string
		line       int
	}{
		{"", "f.yaml:1: file is empty; want a list", 1},
		{"# only\n\n", "f.yaml:1: file is empty; want a list", 1},
		{"a: 1\nb: [\n", "f.yaml:2: invalid YAML: line 2:", 2},
		{"a: 1\nb: 2\nc: \"x\n", "f.yaml:3: invalid YAML: line 3:", 3},
	} {
		_, err := Document("f.yaml", []byte(c.data), "a list")
		var fe *Error
		if !errors.As(err, &fe) || fe.Line != c.line || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Document(%q) = %v, want an *Error starting %q", c.data, err, c.want)
		}
	}
	root, err := Document("f.yaml", []byte("a: 1\n"), "a list")
	if err != nil || len(root.Content) != 2 || root.Content[0].Value != "a" {
		t.Fatalf("root %+v, %v", root, err)
	}
}

func TestRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.yaml")
	os.WriteFile(path, []byte("hi"), 0o600)
	got, err := Read(path, "thing", func(name string, data []byte) (string, error) { return name + "=" + string(data), nil })
	if err != nil || got != path+"=hi" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := Read(path+".missing", "thing", func(string, []byte) (int, error) { return 0, nil }); err == nil || !strings.HasPrefix(err.Error(), "read thing: ") {
		t.Fatalf("missing file: %v", err)
	}
}
