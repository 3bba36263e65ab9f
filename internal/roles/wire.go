package roles

// Wire types shared by the engine (which renders roles per machine and
// serves them), the install config (which seeds the agent's state) and the
// agent (which applies them on the running machine).

// File is a file a role writes.
type File struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	// Mode is octal, e.g. "0644" (the default).
	Mode string `json:"mode,omitempty"`
	// Owner is user[:group] (default root:root).
	Owner string `json:"owner,omitempty"`
}

// Parameter types.
const (
	TypeString = "string"
	TypeNumber = "number"
	TypeBool   = "bool"
)

// ParameterTypes lists the values Parameter.Type accepts.
func ParameterTypes() []string { return []string{TypeString, TypeNumber, TypeBool} }

// Parameter is a role input. Without a default every machine using the
// role must set it.
type Parameter struct {
	Type        string  `json:"type"`
	Default     *string `json:"default,omitempty"`
	Description string  `json:"description,omitempty"`
}

// Role is a reusable layer of configuration, as the catalog stores it
// (templates not yet rendered).
type Role struct {
	Name        string               `json:"name"`
	Description string               `json:"description,omitempty"`
	Requires    []string             `json:"requires,omitempty"`
	Parameters  map[string]Parameter `json:"parameters,omitempty"`
	Files       []File               `json:"files,omitempty"`
	Packages    []string             `json:"packages,omitempty"`
	// Scripts run in order, each with /bin/sh (or its own #! line).
	Scripts []string `json:"scripts,omitempty"`
	// CloudConfig is a #cloud-config fragment merged into the install
	// config. It takes effect at install only.
	CloudConfig string `json:"cloud_config,omitempty"`
	// OnRemove runs when the role leaves a running machine.
	OnRemove string `json:"on_remove,omitempty"`
}

// Rendered is a role rendered for one machine: what the agent applies.
type Rendered struct {
	Name string `json:"name"`
	// Digest is the sha256 (hex) of the rendered content the agent applies
	// (files, packages, scripts, on_remove): equal digests need no work.
	Digest      string   `json:"digest"`
	Files       []File   `json:"files,omitempty"`
	Packages    []string `json:"packages,omitempty"`
	Scripts     []string `json:"scripts,omitempty"`
	CloudConfig string   `json:"cloud_config,omitempty"`
	OnRemove    string   `json:"on_remove,omitempty"`
}

// Desired is a machine's desired role set, in application order.
type Desired struct {
	MachineID string `json:"machine_id"`
	// Revision is the digest of the ordered role digests.
	Revision string `json:"revision"`
	// Generation grows with every apply request, so an agent retries roles
	// that failed even when the revision did not change.
	Generation uint64     `json:"generation"`
	Roles      []Rendered `json:"roles"`
}

// Result actions and statuses.
const (
	ActionApplied   = "applied"
	ActionUnchanged = "unchanged"
	ActionRemoved   = "removed"

	StatusOK     = "ok"
	StatusFailed = "failed"
)

// Result is what happened to one role.
type Result struct {
	Role   string `json:"role"`
	Digest string `json:"digest,omitempty"`
	Action string `json:"action"`
	Status string `json:"status"`
	// Output is the tail (at most MaxOutput bytes) of what the role's
	// scripts and package installs printed, or the error.
	Output string `json:"output,omitempty"`
}

// MaxOutput bounds Result.Output.
const MaxOutput = 16 << 10

// Report is what the agent sends after working on a Desired.
type Report struct {
	Revision   string   `json:"revision"`
	Generation uint64   `json:"generation"`
	Results    []Result `json:"results"`
}

// AgentConfig is the agent's configuration file (written by the install
// config with mode 0600; it holds the machine's credential).
type AgentConfig struct {
	// Server is the boot service's base URL, e.g. http://192.0.2.1:8080.
	Server     string `json:"server"`
	MachineID  string `json:"machine_id"`
	Credential string `json:"credential"`
}

// AppliedRole is a role as the agent last applied it.
type AppliedRole struct {
	Digest string `json:"digest"`
	Status string `json:"status"`
	// Files are the paths the role wrote (removed with the role).
	Files    []string `json:"files,omitempty"`
	OnRemove string   `json:"on_remove,omitempty"`
}

// State is the agent's record of what it applied. The install config
// seeds it with the roles it applied, so the agent does not redo them.
type State struct {
	Revision   string                 `json:"revision"`
	Generation uint64                 `json:"generation"`
	Roles      map[string]AppliedRole `json:"roles"`
	// Order is the application order of Roles (on_remove runs in reverse).
	Order []string `json:"order"`
}

// Agent HTTP routes on the boot service.
const (
	// PathDesired: GET with "Authorization: Bearer <credential>" and query
	// revision, generation (what the agent has) and wait (seconds, at most
	// MaxWait). 200 with a Desired once it differs, 204 when the wait ends
	// with nothing new, 401 for a bad credential.
	PathDesired = "/agent/v1/desired"
	// PathReport: POST a Report (same authorization); 204.
	PathReport = "/agent/v1/report"
	// PathBinary: GET the agent binary (linux, the server's architecture).
	PathBinary = "/agent/v1/binary"
	// MaxWait bounds a long poll, in seconds.
	MaxWait = 60
)

// Default paths on the installed machine.
const (
	DefaultConfigPath = "/etc/metal-agent/agent.json"
	DefaultStatePath  = "/var/lib/metal-agent/state.json"
	DefaultBinaryPath = "/usr/local/bin/metal-agent"
)

// Install-time results. The install config runs role scripts through
// InstallRunner, in the InstallDir next to the agent's state: each role's
// output goes to <role>.log, and the first failure writes InstallFailed
// ("<role>\n<exit status>\n") and skips every later script. The agent's
// first start reports that failure and records the role (and those after
// it) as failed, so the next apply retries them in place.
const (
	InstallDir    = "install"
	InstallRunner = "run"
	InstallFailed = "failed"
	// DefaultInstallDir is InstallDir next to DefaultStatePath.
	DefaultInstallDir = "/var/lib/metal-agent/" + InstallDir
)

// InstallRunnerScript is the InstallRunner: `run <role> <script>`.
const InstallRunnerScript = `#!/bin/sh
# composable-metal: run one role script at install. Output goes to
# <role>.log here; the first failure is recorded in "failed" for the role
# agent to report, and the scripts after it are skipped.
d=$(dirname "$0")
if [ -e "$d/failed" ]; then
  echo "metal: not running $1: an earlier role failed at install" >&2
  exit 0
fi
"$2" >"$d/$1.out" 2>&1
rc=$?
cat "$d/$1.out"
cat "$d/$1.out" >>"$d/$1.log"
rm -f "$d/$1.out"
if [ "$rc" -ne 0 ]; then
  printf '%s\n%s\n' "$1" "$rc" >"$d/failed"
  echo "metal: role $1 failed at install (exit status $rc)" >&2
fi
exit "$rc"
`
