package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestYAMLParses parses every YAML document under deploy/ so a typo fails CI.
func TestYAMLParses(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yml") || strings.HasSuffix(path, ".yaml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under deploy/")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(data))
			docs := 0
			for {
				var doc yaml.Node
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				docs++
			}
			if docs == 0 {
				t.Fatalf("%s holds no YAML document", f)
			}
		})
	}
}

// TestComposeHasTheStack checks the compose file names the services the
// pipeline needs, each with a healthcheck, and logical WAL on the source.
func TestComposeHasTheStack(t *testing.T) {
	data, err := os.ReadFile("compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string    `yaml:"image"`
			Command     []string  `yaml:"command"`
			Healthcheck *struct{} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nats", "legacy-postgres", "cube-postgres"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if s.Image == "" || s.Healthcheck == nil {
			t.Errorf("service %s needs an image and a healthcheck", name)
		}
	}
	if !strings.Contains(strings.Join(c.Services["legacy-postgres"].Command, " "), "wal_level=logical") {
		t.Error("legacy-postgres must run with wal_level=logical (CDC source)")
	}
	if !strings.Contains(strings.Join(c.Services["nats"].Command, " "), "-js") {
		t.Error("nats must run with JetStream (-js)")
	}
}
