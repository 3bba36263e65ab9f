package lab

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// .ci/run installs every Debian package the lab needs, so `make test-lab`
// runs there instead of skipping.
func TestCIInstallsLabPackages(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Packages() {
		if !regexp.MustCompile(`(^|[\s"])` + regexp.QuoteMeta(p) + `($|[\s"])`).Match(b) {
			t.Errorf(".ci/run does not install %s, which the lab needs", p)
		}
	}
}
