// Package hybridtest proves that metal composes with AWS in one Terraform
// plan: its test runs examples/hybrid-aws with the real terraform CLI, the
// real hashicorp/aws provider from a filesystem mirror (nothing is
// downloaded) against moto_server on loopback, and this provider through
// dev_overrides against cmd/metal-bmcsim with simulated network-booting
// machines.
//
// It needs terraform, moto_server (or python3 with moto) and a filesystem
// mirror holding hashicorp/aws 5.100.0 (METAL_AWS_PROVIDER_MIRROR, else the
// usual mirror directories and /opt/tf-plugins). Without them it skips,
// except when CI=true, where it fails. `make test` runs it; `make
// test-hybrid` runs it alone, verbosely.
package hybridtest
