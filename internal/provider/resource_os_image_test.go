package provider

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"github.com/hashicorp/terraform-plugin-testing/tfversion"
)

const imageAddr = "metal_os_image.test"

// testArtifact is a file an image is made of.
type testArtifact struct {
	path   string
	url    string
	sha256 string
	size   int64
}

// writeArtifact writes content to dir/name and returns its file:// URL and sum.
func writeArtifact(t *testing.T, dir, name, content string) testArtifact {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return testArtifact{path: p, url: "file://" + p, sha256: hex.EncodeToString(sum[:]), size: int64(len(content))}
}

// testKernelInitrd writes a small kernel and initrd unique to the test.
func testKernelInitrd(t *testing.T) (kernel, initrd testArtifact) {
	t.Helper()
	dir := t.TempDir()
	return writeArtifact(t, dir, "vmlinuz", "kernel of "+t.Name()), writeArtifact(t, dir, "initrd.img", "initrd of "+t.Name()+strings.Repeat("x", 100))
}

// bootProviderConfig is a provider block whose boot service lives in
// stateDir, serves HTTP on a free loopback port and runs no TFTP; dhcp is
// the body of the dhcp block.
func bootProviderConfig(stateDir, dhcp string) string {
	return fmt.Sprintf(`
provider "metal" {
  poll_interval = %q
  boot_service {
    address     = "127.0.0.1"
    http_listen = "127.0.0.1:0"
    state_dir   = %q
    tftp {
      enabled = false
    }
    dhcp {
%s
    }
  }
}
`, testPollInterval, stateDir, dhcp)
}

// imageConfig is a metal_os_image "test" of kind cloud-init; extra goes
// into the resource body.
func imageConfig(kernel, initrd testArtifact, extra string) string {
	return fmt.Sprintf(`
resource "metal_os_image" "test" {
  name    = "test-image"
  install = "cloud-init"
  kernel = {
    url = %q
  }
  initrd = {
    url = %q
  }
%s
}
`, kernel.url, initrd.url, extra)
}

func TestAccOSImage_fileURLs(t *testing.T) {
	stateDir := t.TempDir()
	kernel, initrd := testKernelInitrd(t)
	config := bootProviderConfig(stateDir, `mode = "off"`) + imageConfig(kernel, initrd, `  kernel_args = ["console=ttyS0"]`)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config: config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("id"), knownvalue.StringExact("test-image")),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("kernel").AtMapKey("sha256"), knownvalue.StringExact(kernel.sha256)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("initrd").AtMapKey("sha256"), knownvalue.StringExact(initrd.sha256)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("kernel_size"), knownvalue.Int64Exact(kernel.size)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("initrd_size"), knownvalue.Int64Exact(initrd.size)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("image"), knownvalue.Null()),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("image_size"), knownvalue.Null()),
				},
				Check: func(*terraform.State) error {
					// The cache holds the files by content.
					for _, a := range []testArtifact{kernel, initrd} {
						if _, err := os.Stat(filepath.Join(stateDir, "artifacts", "sha256", a.sha256)); err != nil {
							return fmt.Errorf("%s is not in the cache: %w", a.path, err)
						}
					}
					return nil
				},
			},
			{
				Config:           config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
			{
				// Import by name: where the files came from, kernel_args and
				// templates are not recorded by the boot service.
				ResourceName:            imageAddr,
				ImportState:             true,
				ImportStateId:           "test-image",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"kernel.url", "initrd.url", "kernel_args"},
			},
			{
				ResourceName:  imageAddr,
				ImportState:   true,
				ImportStateId: "no such image!",
				ExpectError:   errorMatching("Invalid Import ID", "the ID is the image's name"),
			},
			{
				// Changing an input replaces the image.
				Config: bootProviderConfig(stateDir, `mode = "off"`) + imageConfig(kernel, initrd, `  kernel_args = ["console=ttyS1"]`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(imageAddr, plancheck.ResourceActionDestroyBeforeCreate),
				}},
			},
		},
	})
}

// An image that exists in the boot service but not in state is adopted with
// an import block: the configuration's files are checked against the
// recorded sums, in place.
func TestAccOSImage_importBlockAdopts(t *testing.T) {
	stateDir := t.TempDir()
	kernel, initrd := testKernelInitrd(t)
	provider := bootProviderConfig(stateDir, `mode = "off"`)
	body := imageConfig(kernel, initrd, `  kernel_args = ["console=ttyS0"]`)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		// removed blocks came with Terraform 1.7.
		TerraformVersionChecks: []tfversion.TerraformVersionCheck{tfversion.SkipBelow(tfversion.Version1_7_0)},
		Steps: []resource.TestStep{
			{
				// Created under another address, then forgotten by Terraform.
				Config: provider + strings.Replace(body, `"test"`, `"other"`, 1),
			},
			{
				Config: provider + `
removed {
  from = metal_os_image.other
  lifecycle {
    destroy = false
  }
}
`,
			},
			{
				Config: provider + body + `
import {
  to = metal_os_image.test
  id = "test-image"
}
`,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(imageAddr, plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("kernel").AtMapKey("url"), knownvalue.StringExact(kernel.url)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("kernel").AtMapKey("sha256"), knownvalue.StringExact(kernel.sha256)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("install"), knownvalue.StringExact("cloud-init")),
				},
			},
			{
				Config:           provider + body,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
		},
	})
}

func TestAccOSImage_checksumMismatch(t *testing.T) {
	kernel, initrd := testKernelInitrd(t)
	wrong := strings.Repeat("ab", 32)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{{
			Config: bootProviderConfig(t.TempDir(), `mode = "off"`) + fmt.Sprintf(`
resource "metal_os_image" "test" {
  name    = "mismatch"
  install = "cloud-init"
  kernel = {
    url = %q
  }
  initrd = {
    url    = %q
    sha256 = %q
  }
}
`, kernel.url, initrd.url, wrong),
			ExpectError: errorMatching("OS Image Checksum Mismatch", "initrd", initrd.path, wrong, initrd.sha256),
		}},
	})
}

func TestAccOSImage_planTimeValidation(t *testing.T) {
	stateDir := t.TempDir()
	provider := bootProviderConfig(stateDir, `mode = "off"`)
	image := func(kernel string) string {
		return provider + fmt.Sprintf(`
resource "metal_os_image" "test" {
  name    = "bad"
  install = "cloud-init"
  kernel = %s
  initrd = {
    url    = "https://images.example/initrd"
    sha256 = %q
  }
}
`, kernel, strings.Repeat("0", 64))
	}
	cases := []struct {
		name   string
		kernel string
		want   []string
	}{
		{"http without sha256", `{ url = "http://images.example/vmlinuz" }`,
			[]string{"Missing Checksum", "`kernel.url` is downloaded over http", `add ` + "`" + `sha256 = "<64 hex>"` + "`", "to `kernel`"}},
		{"bad scheme", `{ url = "ftp://images.example/vmlinuz" }`, []string{"Invalid Image URL", "http://, https:// or file:///"}},
		{"relative file", `{ url = "file://vmlinuz" }`, []string{"Invalid Image URL", "absolute path"}},
		{"upper-case sha256", fmt.Sprintf(`{ url = "https://images.example/vmlinuz", sha256 = %q }`, strings.Repeat("AB", 32)),
			[]string{"Invalid Checksum", "64 lower-case hex digits"}},
		{"short sha256", `{ url = "https://images.example/vmlinuz", sha256 = "abc" }`, []string{"Invalid Checksum"}},
		{"credentials", fmt.Sprintf(`{ url = "https://u:p@images.example/vmlinuz", sha256 = %q }`, strings.Repeat("a", 64)),
			[]string{"Invalid Image URL", "carries credentials"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resource.ParallelTest(t, resource.TestCase{
				IsUnitTest:               true,
				ProtoV6ProviderFactories: protoV6ProviderFactories(),
				Steps:                    []resource.TestStep{{Config: image(c.kernel), PlanOnly: true, ExpectError: errorMatching(c.want...)}},
			})
		})
	}
	// The subtests run in parallel after this function returns.
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(stateDir, "metal.db")); err == nil {
			t.Error("plan-time validation started the boot service")
		}
	})
}

// An http(s) URL with the right sha256 is downloaded (from a loopback server).
func TestAccOSImage_httpURL(t *testing.T) {
	kernel, initrd := testKernelInitrd(t)
	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.URL.Path)
		mu.Unlock()
		http.ServeFile(w, r, filepath.Join(filepath.Dir(kernel.path), filepath.Base(r.URL.Path)))
	}))
	t.Cleanup(srv.Close)
	config := bootProviderConfig(t.TempDir(), `mode = "off"`) + fmt.Sprintf(`
resource "metal_os_image" "test" {
  name    = "from-http"
  install = "cloud-init"
  kernel = {
    url    = "%s/vmlinuz"
    sha256 = %q
  }
  initrd = {
    url    = "%s/initrd.img"
    sha256 = %q
  }
}
`, srv.URL, kernel.sha256, srv.URL, initrd.sha256)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{
				Config: config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("kernel_size"), knownvalue.Int64Exact(kernel.size)),
					statecheck.ExpectKnownValue(imageAddr, tfjsonpath.New("initrd").AtMapKey("sha256"), knownvalue.StringExact(initrd.sha256)),
				},
				Check: func(*terraform.State) error {
					mu.Lock()
					defer mu.Unlock()
					if len(requests) != 2 {
						return fmt.Errorf("the server got %v, want one request per file", requests)
					}
					return nil
				},
			},
			{
				Config:           config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
		},
	})
}

// A file that leaves the cache makes the image gone: refresh drops it with
// a warning and the next apply fetches it again.
func TestAccOSImage_cacheWiped(t *testing.T) {
	stateDir := t.TempDir()
	kernel, initrd := testKernelInitrd(t)
	config := bootProviderConfig(stateDir, `mode = "off"`) + imageConfig(kernel, initrd, "")
	cached := filepath.Join(stateDir, "artifacts", "sha256", kernel.sha256)
	resource.ParallelTest(t, resource.TestCase{
		IsUnitTest:               true,
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		Steps: []resource.TestStep{
			{Config: config},
			{
				PreConfig:          func() { removeOrFail(t, cached) },
				Config:             config,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(imageAddr, plancheck.ResourceActionCreate),
				}},
			},
			{
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(imageAddr, plancheck.ResourceActionCreate),
				}},
				Check: func(*terraform.State) error {
					if _, err := os.Stat(cached); err != nil {
						return fmt.Errorf("the kernel was not fetched again: %w", err)
					}
					return nil
				},
			},
		},
	})
}

func removeOrFail(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

// freeUDPPort returns a loopback UDP port nothing listens on (for DHCP).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}
