package machinesim

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"maps"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestCloudConfigWriteFiles(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write([]byte("zipped\n")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	s := &seed{cfg: map[string]any{}}
	ud := "#cloud-config\nwrite_files:\n" +
		"  - path: /etc/plain\n    content: |\n      endpoint=lb-1.example.com\n" +
		"  - path: /etc/b64\n    encoding: b64\n    content: " + base64.StdEncoding.EncodeToString([]byte("decoded")) + "\n" +
		"  - path: /etc/gz\n    encoding: gz+b64\n    content: " + base64.StdEncoding.EncodeToString(gz.Bytes()) + "\n" +
		"  - path: /etc/plain\n    append: true\n    content: more\n" +
		"  - path: /etc/empty\n"
	if err := s.parseUserData([]byte(ud)); err != nil {
		t.Fatal(err)
	}
	got, err := cloudConfigFiles(s.cfg["write_files"])
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/etc/plain": "endpoint=lb-1.example.com\nmore",
		"/etc/b64":   "decoded",
		"/etc/gz":    "zipped\n",
		"/etc/empty": "",
	}
	if !maps.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}

	if got, err := cloudConfigFiles(nil); got != nil || err != nil {
		t.Errorf("no write_files = %v, %v; want nil, nil", got, err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"write_files: {path: /x}", "want a list"},
		{"write_files: [/x]", "want a mapping"},
		{"write_files: [{path: etc/x}]", "not absolute"},
		{"write_files: [{path: /x, encoding: b64, content: '!!'}]", "encoding b64"},
		{"write_files: [{path: /x, encoding: rot13, content: a}]", "unknown encoding"},
	} {
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(bad.yaml), &cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := cloudConfigFiles(cfg["write_files"]); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one containing %q", bad.yaml, err, bad.want)
		}
	}
}
