package routes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmptyFile: an empty routes file (or one with only comments or
// blanks) says the file is empty, not "EOF".
func TestEmptyFile(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "blank": "\n  \n", "comments only": "# routes\n# none yet\n"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "routes.yaml")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), "file is empty") || strings.Contains(err.Error(), "EOF") ||
				!strings.HasPrefix(err.Error(), path) {
				t.Fatalf("Load(%q) = %v, want an error naming the file and saying it is empty", content, err)
			}
		})
	}
}
