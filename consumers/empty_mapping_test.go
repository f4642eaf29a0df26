package consumers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmptyMappingFile: an empty mapping file (or one with only comments or
// blanks) says the file is empty, not "EOF".
func TestEmptyMappingFile(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "blank": "\n  \n", "comments only": "# mapping\n"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mapping.yaml")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadMapping(path)
			if err == nil || !strings.Contains(err.Error(), "file is empty") || strings.Contains(err.Error(), "EOF") ||
				!strings.HasPrefix(err.Error(), path) {
				t.Fatalf("LoadMapping(%q) = %v, want an error naming the file and saying it is empty", content, err)
			}
		})
	}
}
