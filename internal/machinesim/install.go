package machinesim

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Installer names (Result.Installer, Installation.Kind).
const (
	InstallerCloudInit = "cloud-init"
	InstallerKickstart = "kickstart"
	InstallerIgnition  = "ignition"
	InstallerImage     = "image"
	InstallerWipe      = "wipe"
)

// StageInstall is the stage of installer failures that are not a fetch (a
// config that does not parse, a network config for another machine...).
const StageInstall = "install"

// cmdline is a parsed kernel command line: the first value of each key.
type cmdline map[string]string

func parseCmdline(args []string) cmdline {
	c := cmdline{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		if _, dup := c[k]; !dup {
			c[k] = v
		}
	}
	return c
}

// install runs the installer the kernel command line names. A kernel
// without one is a live system: nothing more happens.
func (r *run) install(kernel *image, initrds []*image) error {
	args := parseCmdline(kernel.args)
	base := Installation{KernelSHA256: kernel.sha256, Configs: map[string]string{}}
	for _, a := range kernel.args {
		if name, ok := strings.CutPrefix(a, "initrd="); ok {
			for _, i := range initrds {
				if i.name == name && base.InitrdSHA256 == "" {
					base.InitrdSHA256 = i.sha256
				}
			}
		}
	}
	if base.InitrdSHA256 == "" && len(initrds) > 0 {
		base.InitrdSHA256 = initrds[0].sha256
	}
	var err error
	switch {
	case args["metal.action"] == "wipe":
		r.res.Installer = InstallerWipe
		err = r.wipe(args)
	case strings.HasPrefix(args["ds"], "nocloud"):
		r.res.Installer = InstallerCloudInit
		err = r.cloudInit(args["ds"], base)
	case args["inst.ks"] != "" || args["ks"] != "":
		r.res.Installer = InstallerKickstart
		ks := args["inst.ks"]
		if ks == "" {
			ks = args["ks"]
		}
		err = r.kickstart(ks, base)
	case args["coreos.inst.ignition_url"] != "":
		r.res.Installer = InstallerIgnition
		err = r.ignition(args, base)
	case args["metal.config"] != "":
		r.res.Installer = InstallerImage
		err = r.imageWriter(args["metal.config"], base)
	default:
		r.log.Debug("kernel booted without a known installer: a live system")
		return nil
	}
	if err == nil {
		err = r.provisionedErr
	}
	return err
}

func installErr(format string, a ...any) error {
	return &StageError{Stage: StageInstall, Err: fmt.Errorf(format, a...)}
}

// fetchConfig downloads an installer config; optional configs may be
// absent (404). The stage is recorded on success and the sum kept.
func (r *run) fetchConfig(rawURL, ua string, optional bool, inst *Installation) ([]byte, error) {
	stage := stageOf(rawURL)
	f, err := r.get(stage, rawURL, ua, maxConfigBytes)
	if err != nil {
		var se *StageError
		if optional && errors.As(err, &se) && se.Status == http.StatusNotFound {
			return nil, nil
		}
		return nil, err
	}
	r.stage(stage)
	if inst != nil {
		inst.Configs[path.Base(urlPath(rawURL))] = f.sha256
	}
	return f.data, nil
}

// postEvent reports a progress stage to an events URL, best effort, as the
// installers do.
func (r *run) postEvent(rawURL, stage, message string) {
	if rawURL == "" {
		return
	}
	body, _ := json.Marshal(map[string]string{"stage": stage, "message": message})
	status, err := r.send(stageOf(rawURL), http.MethodPost, rawURL, "application/json", uaInstaller, body, nil)
	if err == nil && status/100 == 2 {
		r.reported(stage)
		return
	}
	r.log.Debug("event not accepted", slog.String("stage", stage), slog.Int("status", status), slog.Any("error", err))
}

// postProvisioned makes the provisioned callback and records the answer.
func (r *run) postProvisioned(rawURL, ua, contentType string, body []byte) error {
	status, err := r.send(stageOf(rawURL), http.MethodPost, rawURL, contentType, ua, body, nil)
	r.provisionedAnswer(http.MethodPost, rawURL, status, err)
	return r.provisionedErr
}

// --- cloud-init (NoCloud over HTTP) -----------------------------------------

// cloudInit plays cloud-init with a NoCloud seed from the kernel command
// line: ds=nocloud-net;s=URL (also ds=nocloud;seedfrom=URL, h=, i=).
func (r *run) cloudInit(ds string, inst Installation) error {
	inst.Kind = InstallerCloudInit
	var seed, cmdHost, cmdID string
	for _, part := range strings.Split(ds, ";")[1:] {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "s", "seedfrom":
			seed = v
		case "h", "local-hostname":
			cmdHost = v
		case "i", "instance-id":
			cmdID = v
		}
	}
	if !strings.HasPrefix(seed, "http://") && !strings.HasPrefix(seed, "https://") {
		return installErr("ds=%s has no http(s) seed URL (s=)", RedactURL(ds))
	}
	// cloud-init appends the file names to the seed as it is.
	seedData, err := r.fetchSeed(seed, uaCloudInit, &inst)
	if err != nil {
		return err
	}
	if cmdHost != "" && seedData.meta.hostname == "" {
		seedData.meta.hostname = cmdHost
	}
	if cmdID != "" {
		seedData.meta.instanceID = cmdID
	}
	seedData.apply(&inst)
	files, err := cloudConfigFiles(seedData.cfg["write_files"])
	if err != nil {
		return &StageError{Stage: StageInstall, Err: err}
	}
	inst.Files = files
	if err := r.checkNetwork(inst.Network, "network-config"); err != nil {
		return err
	}
	r.disk.Install(inst)

	// The final stages: runcmd, then phone_home.
	r.runCmds(seedData.cfg["runcmd"], "cloud-init runcmd")
	return r.phoneHome(seedData, inst)
}

// seed is a parsed NoCloud seed.
type seed struct {
	meta struct{ instanceID, hostname string }
	cfg  map[string]any // merged cloud-config
	// parts are the user-data part types.
	parts   []string
	network *Network
}

func (s *seed) apply(inst *Installation) {
	inst.InstanceID = s.meta.instanceID
	inst.Hostname = s.meta.hostname
	if h, ok := s.cfg["hostname"].(string); ok && h != "" {
		inst.Hostname = h
	}
	if h, ok := s.cfg["fqdn"].(string); ok && h != "" {
		inst.Hostname = h
	}
	inst.SSHAuthorizedKeys = stringList(s.cfg["ssh_authorized_keys"])
	inst.UserDataParts = s.parts
	if s.network != nil {
		inst.Network = *s.network
	}
}

// fetchSeed reads meta-data, user-data and (optional) network-config under
// a seed URL, as cloud-init's NoCloud datasource does.
func (r *run) fetchSeed(base, ua string, inst *Installation) (*seed, error) {
	s := &seed{cfg: map[string]any{}}
	md, err := r.fetchConfig(base+"meta-data", ua, false, inst)
	if err != nil {
		return nil, err
	}
	var meta map[string]any
	if err := yaml.Unmarshal(md, &meta); err != nil {
		return nil, &StageError{Stage: stageOf(base + "meta-data"), Err: fmt.Errorf("meta-data is not YAML: %w", err)}
	}
	s.meta.instanceID, _ = meta["instance-id"].(string)
	s.meta.hostname, _ = meta["local-hostname"].(string)
	if s.meta.hostname == "" {
		s.meta.hostname, _ = meta["hostname"].(string)
	}

	ud, err := r.fetchConfig(base+"user-data", ua, false, inst)
	if err != nil {
		return nil, err
	}
	if err := s.parseUserData(ud); err != nil {
		return nil, &StageError{Stage: stageOf(base + "user-data"), Err: err}
	}

	nc, err := r.fetchConfig(base+"network-config", ua, true, inst)
	if err != nil {
		return nil, err
	}
	if nc != nil {
		n, err := parseNetplan(nc)
		if err != nil {
			return nil, &StageError{Stage: stageOf(base + "network-config"), Err: err}
		}
		s.network = n
	}
	return s, nil
}

// parseUserData handles #cloud-config and multipart MIME user-data. Later
// cloud-config parts replace earlier top-level keys.
func (s *seed) parseUserData(ud []byte) error {
	first, _, _ := strings.Cut(string(ud), "\n")
	first = strings.TrimSpace(first)
	lower := strings.ToLower(first)
	switch {
	case first == "#cloud-config":
		s.parts = append(s.parts, "text/cloud-config")
		return s.mergeCloudConfig(ud)
	case strings.HasPrefix(lower, "content-type:") || strings.HasPrefix(lower, "mime-version:"):
		msg, err := mail.ReadMessage(bytes.NewReader(ud))
		if err != nil {
			return fmt.Errorf("user-data is not MIME: %w", err)
		}
		return s.parseMIME(msg.Header.Get("Content-Type"), msg.Body)
	case strings.HasPrefix(first, "#!"):
		s.parts = append(s.parts, "text/x-shellscript")
		return nil
	case first == "":
		return nil
	}
	return fmt.Errorf("user-data of an unknown format (first line %q)", first)
}

func (s *seed) parseMIME(contentType string, body io.Reader) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("user-data MIME type: %w", err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		s.parts = append(s.parts, mt)
		if mt == "text/cloud-config" {
			return s.mergeCloudConfig(b)
		}
		return nil
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("user-data MIME: %w", err)
		}
		var rd io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
			rd = base64.NewDecoder(base64.StdEncoding, p)
		}
		ct := p.Header.Get("Content-Type")
		if ct == "" {
			ct = "text/plain"
		}
		if err := s.parseMIME(ct, rd); err != nil {
			return err
		}
	}
}

func (s *seed) mergeCloudConfig(b []byte) error {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("cloud-config is not YAML: %w", err)
	}
	for k, v := range m {
		s.cfg[k] = v
	}
	return nil
}

// runCmds runs cloud-init runcmd entries: a string is a shell line, a list
// an argv.
func (r *run) runCmds(v any, what string) {
	list, _ := v.([]any)
	for _, e := range list {
		switch c := e.(type) {
		case string:
			r.runShellScript(c, what)
		case []any:
			argv := stringList(c)
			if len(argv) > 0 {
				r.runArgv(argv, what)
			}
		}
	}
}

// phoneHome is cloud-init's phone_home module: POST the requested keys as a
// form to the configured URL, tries times.
func (r *run) phoneHome(s *seed, inst Installation) error {
	ph, _ := s.cfg["phone_home"].(map[string]any)
	if ph == nil {
		r.log.Debug("no phone_home in user-data: nothing reports provisioned")
		return nil
	}
	target, _ := ph["url"].(string)
	if target == "" {
		return installErr("phone_home has no url")
	}
	target = strings.NewReplacer("$INSTANCE_ID", inst.InstanceID, "${INSTANCE_ID}", inst.InstanceID).Replace(target)
	values := map[string]string{
		"pub_key_rsa":     "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCmachinesim root@" + inst.Hostname,
		"pub_key_ecdsa":   "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYmachinesim root@" + inst.Hostname,
		"pub_key_ed25519": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAImachinesim root@" + inst.Hostname,
		"instance_id":     inst.InstanceID,
		"hostname":        inst.Hostname,
		"fqdn":            inst.Hostname,
	}
	keys := stringList(ph["post"])
	if p, ok := ph["post"].(string); ok && p == "all" || len(keys) == 0 {
		keys = []string{"pub_key_rsa", "pub_key_ecdsa", "pub_key_ed25519", "instance_id", "hostname", "fqdn"}
	}
	form := url.Values{}
	for _, k := range keys {
		if v, ok := values[k]; ok {
			form.Set(k, v)
		}
	}
	tries := 10
	if n, ok := ph["tries"].(int); ok && n > 0 {
		tries = n
	}
	for attempt := 1; ; attempt++ {
		err := r.postProvisioned(target, uaCloudInit, "application/x-www-form-urlencoded", []byte(form.Encode()))
		var se *StageError
		if err == nil || attempt >= tries || (errors.As(err, &se) && se.Status/100 == 4) {
			return err
		}
		if r.sleep(3*time.Second) != nil {
			return err
		}
	}
}

// parseNetplan reads the first ethernet of a netplan v2 network-config.
func parseNetplan(b []byte) (*Network, error) {
	var nc struct {
		Version   int `yaml:"version"`
		Ethernets map[string]struct {
			Match struct {
				MAC string `yaml:"macaddress"`
			} `yaml:"match"`
			DHCP4     bool     `yaml:"dhcp4"`
			DHCP6     bool     `yaml:"dhcp6"`
			Addresses []string `yaml:"addresses"`
			Gateway4  string   `yaml:"gateway4"`
			Routes    []struct {
				To  string `yaml:"to"`
				Via string `yaml:"via"`
			} `yaml:"routes"`
			Nameservers struct {
				Addresses []string `yaml:"addresses"`
				Search    []string `yaml:"search"`
			} `yaml:"nameservers"`
		} `yaml:"ethernets"`
	}
	if err := yaml.Unmarshal(b, &nc); err != nil {
		return nil, fmt.Errorf("network-config is not YAML: %w", err)
	}
	if nc.Version != 2 {
		return nil, fmt.Errorf("network-config version %d, want 2", nc.Version)
	}
	if len(nc.Ethernets) == 0 {
		return &Network{}, nil
	}
	names := make([]string, 0, len(nc.Ethernets))
	for n := range nc.Ethernets {
		names = append(names, n)
	}
	// Deterministic: the alphabetically first interface.
	first := names[0]
	for _, n := range names {
		if n < first {
			first = n
		}
	}
	e := nc.Ethernets[first]
	out := &Network{
		MAC:           strings.ToLower(e.Match.MAC),
		DHCP:          e.DHCP4 || e.DHCP6,
		Addresses:     e.Addresses,
		Gateway:       e.Gateway4,
		DNS:           e.Nameservers.Addresses,
		SearchDomains: e.Nameservers.Search,
	}
	for _, rt := range e.Routes {
		if rt.To == "default" || rt.To == "0.0.0.0/0" || rt.To == "::/0" {
			out.Gateway = rt.Via
		}
	}
	return out, nil
}

// checkNetwork refuses a network configuration bound to a MAC the machine
// does not have: the installed system would come up without network and
// never report back.
func (r *run) checkNetwork(n Network, what string) error {
	if n.MAC == "" {
		return nil
	}
	hw, err := net.ParseMAC(n.MAC)
	if err != nil {
		return installErr("%s: %q is not a MAC address", what, n.MAC)
	}
	if !bytes.Equal(hw, r.m.MAC) {
		return installErr("%s is bound to %s, which is not this machine's NIC (%s)", what, hw, r.m.MAC)
	}
	return nil
}

// --- kickstart (Anaconda) ------------------------------------------------------

func (r *run) kickstart(ksURL string, inst Installation) error {
	inst.Kind = InstallerKickstart
	ks, err := r.fetchConfig(ksURL, "anaconda/40", false, &inst)
	if err != nil {
		return err
	}
	type section struct {
		kind   string // "pre", "post"
		header string
		body   strings.Builder
	}
	var (
		sections []*section
		cur      *section
		skipping bool
		netSeen  bool
	)
	sc := bufio.NewScanner(bytes.NewReader(ks))
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		if cur != nil || skipping {
			if trim == "%end" {
				cur, skipping = nil, false
				continue
			}
			if cur != nil {
				cur.body.WriteString(line + "\n")
			}
			continue
		}
		if trim == "" || strings.HasPrefix(trim, "#") {
			continue
		}
		words, err := shellSplit(trim)
		if err != nil || len(words) == 0 {
			return &StageError{Stage: stageOf(ksURL), Err: fmt.Errorf("kickstart line %q does not parse", trim)}
		}
		argv := make([]string, 0, len(words))
		for _, w := range words {
			argv = append(argv, w.text)
		}
		switch argv[0] {
		case "%pre", "%post":
			cur = &section{kind: argv[0][1:], header: trim}
			sections = append(sections, cur)
		case "%packages", "%addon", "%anaconda", "%onerror", "%traceback":
			skipping = true
		case "network":
			if !netSeen {
				netSeen = true
				n, host := kickstartNetwork(argv[1:])
				inst.Network = n
				if host != "" {
					inst.Hostname = host
				}
			}
		case "sshkey":
			if len(argv) > 1 {
				inst.SSHAuthorizedKeys = append(inst.SSHAuthorizedKeys, argv[len(argv)-1])
			}
		case "ignoredisk":
			for _, a := range argv[1:] {
				if dev, ok := strings.CutPrefix(a, "--only-use="); ok {
					inst.TargetDevice = dev
				}
			}
		}
	}
	if cur != nil {
		return &StageError{Stage: stageOf(ksURL), Err: fmt.Errorf("%s has no %%end", cur.header)}
	}
	if err := r.checkNetwork(inst.Network, "kickstart network --device"); err != nil {
		return err
	}
	run := func(kind string) {
		for _, s := range sections {
			if s.kind != kind {
				continue
			}
			if strings.Contains(s.header, "--interpreter") && !strings.Contains(s.header, "--interpreter=/bin/sh") &&
				!strings.Contains(s.header, "--interpreter=/usr/bin/sh") && !strings.Contains(s.header, "--interpreter=/bin/bash") {
				r.log.Debug("kickstart section with another interpreter not simulated", slog.String("section", s.header))
				continue
			}
			r.runShellScript(s.body.String(), "kickstart "+s.header)
		}
	}
	run("pre")
	r.disk.Install(inst)
	run("post")
	return nil
}

// kickstartNetwork reads a kickstart network command.
func kickstartNetwork(args []string) (Network, string) {
	var (
		n          Network
		ip, mask   string
		host, dev  string
		bootproto  string
		ipv6, gw6  string
		gateway    string
		nameserver string
	)
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "--device":
			dev = v
		case "--bootproto":
			bootproto = v
		case "--ip":
			ip = v
		case "--netmask":
			mask = v
		case "--gateway":
			gateway = v
		case "--nameserver":
			nameserver = v
		case "--hostname":
			host = v
		case "--ipv6":
			ipv6 = v
		case "--ipv6gateway":
			gw6 = v
		}
	}
	if hw, err := net.ParseMAC(dev); err == nil {
		n.MAC = hw.String()
	}
	n.DHCP = bootproto == "dhcp" || bootproto == ""
	if ip != "" {
		if m, err := netip.ParseAddr(mask); err == nil {
			ones, _ := net.IPMask(m.AsSlice()).Size()
			n.Addresses = append(n.Addresses, ip+"/"+strconv.Itoa(ones))
		} else {
			n.Addresses = append(n.Addresses, ip)
		}
	}
	if ipv6 != "" && ipv6 != "auto" && ipv6 != "dhcp" {
		n.Addresses = append(n.Addresses, ipv6)
	}
	n.Gateway = gateway
	if n.Gateway == "" {
		n.Gateway = gw6
	}
	if nameserver != "" {
		n.DNS = strings.Split(nameserver, ",")
	}
	return n, host
}

// --- Ignition (Fedora CoreOS live + coreos-installer) --------------------------

type ignitionConfig struct {
	Ignition struct {
		Version string `json:"version"`
		Config  struct {
			Merge   []struct{ Source string } `json:"merge"`
			Replace *struct{ Source string }  `json:"replace"`
		} `json:"config"`
	} `json:"ignition"`
	Passwd struct {
		Users []struct {
			Name              string   `json:"name"`
			SSHAuthorizedKeys []string `json:"sshAuthorizedKeys"`
		} `json:"users"`
	} `json:"passwd"`
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Contents struct {
				Source string `json:"source"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
	Systemd struct {
		Units []struct {
			Name     string `json:"name"`
			Enabled  *bool  `json:"enabled"`
			Contents string `json:"contents"`
		} `json:"units"`
	} `json:"systemd"`
}

func (r *run) ignition(args cmdline, inst Installation) error {
	inst.Kind = InstallerIgnition
	inst.TargetDevice = args["coreos.inst.install_dev"]
	if inst.TargetDevice == "" {
		return installErr("coreos.inst.install_dev is not on the kernel command line")
	}
	if rootfs := args["coreos.live.rootfs_url"]; rootfs != "" {
		// The live initramfs fetches its root file system first.
		f, err := r.get(stageOf(rootfs), rootfs, "coreos-liveiso/1", r.imageLimit())
		if err != nil {
			return err
		}
		r.stage(stageOf(rootfs))
		inst.ImageSHA256, inst.ImageSize = f.sha256, int64(len(f.data))
	}
	cfgURL := args["coreos.inst.ignition_url"]
	raw, err := r.fetchConfig(cfgURL, "Ignition/2.19.0", false, &inst)
	if err != nil {
		return err
	}
	files := map[string]string{}
	var keys []string
	type unit struct {
		name, contents string
	}
	var units []unit
	var apply func(b []byte, depth int) error
	apply = func(b []byte, depth int) error {
		if depth > 4 {
			return errors.New("ignition configs merged more than 4 deep")
		}
		var c ignitionConfig
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("not an Ignition config: %w", err)
		}
		if !strings.HasPrefix(c.Ignition.Version, "3.") {
			return fmt.Errorf("ignition version %q, want 3.x", c.Ignition.Version)
		}
		if c.Ignition.Config.Replace != nil {
			child, err := r.ignitionSource(c.Ignition.Config.Replace.Source)
			if err != nil {
				return err
			}
			return apply(child, depth+1)
		}
		for _, u := range c.Passwd.Users {
			keys = append(keys, u.SSHAuthorizedKeys...)
		}
		for _, f := range c.Storage.Files {
			data, err := r.ignitionSource(f.Contents.Source)
			if err != nil {
				return fmt.Errorf("file %s: %w", f.Path, err)
			}
			files[f.Path] = string(data)
		}
		for _, u := range c.Systemd.Units {
			if u.Enabled != nil && *u.Enabled && u.Contents != "" {
				units = append(units, unit{u.Name, u.Contents})
			}
		}
		// Merged children come after (and override) their parent.
		for _, m := range c.Ignition.Config.Merge {
			child, err := r.ignitionSource(m.Source)
			if err != nil {
				return err
			}
			if err := apply(child, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := apply(raw, 0); err != nil {
		var se *StageError
		if errors.As(err, &se) {
			return err
		}
		return &StageError{Stage: stageOf(cfgURL), Err: err}
	}
	inst.Files = files
	inst.SSHAuthorizedKeys = keys
	inst.Hostname = strings.TrimSpace(files["/etc/hostname"])
	inst.MachineID = strings.TrimSpace(files["/etc/composable-metal/machine-id"])
	for p, content := range files {
		if strings.HasPrefix(p, "/etc/NetworkManager/system-connections/") {
			inst.Network = parseNMConnection(content)
			break
		}
	}
	if err := r.checkNetwork(inst.Network, "NetworkManager connection"); err != nil {
		return err
	}
	r.disk.Install(inst)

	// First boot of the installed system: enabled units run.
	for _, u := range units {
		r.runUnit(u.name, u.contents)
	}
	return nil
}

// ignitionSource reads a data: URL or fetches an http(s) one.
func (r *run) ignitionSource(src string) ([]byte, error) {
	switch {
	case strings.HasPrefix(src, "data:"):
		meta, data, ok := strings.Cut(src[len("data:"):], ",")
		if !ok {
			return nil, errors.New("malformed data URL")
		}
		if strings.HasSuffix(meta, ";base64") {
			return base64.StdEncoding.DecodeString(data)
		}
		s, err := url.PathUnescape(data)
		return []byte(s), err
	case strings.HasPrefix(src, "http://"), strings.HasPrefix(src, "https://"):
		f, err := r.get(stageOf(src), src, "Ignition/2.19.0", maxConfigBytes)
		if err != nil {
			return nil, err
		}
		r.stage(stageOf(src))
		return f.data, nil
	case src == "":
		return nil, nil
	}
	return nil, fmt.Errorf("source scheme not simulated: %q", RedactURL(src))
}

// runUnit runs the Exec lines of a oneshot systemd service in order:
// ExecStartPre, ExecStart, ExecStartPost; a failure (without the "-"
// prefix) stops the unit.
func (r *run) runUnit(name, contents string) {
	var pre, start, post []string
	inService := false
	for _, line := range strings.Split(contents, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			inService = line == "[Service]"
			continue
		}
		if !inService {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "ExecStartPre":
			pre = append(pre, v)
		case "ExecStart":
			start = append(start, v)
		case "ExecStartPost":
			post = append(post, v)
		}
	}
	for _, group := range [][]string{pre, start, post} {
		for _, cmd := range group {
			ignore := false
			for cmd != "" && strings.IndexByte("-@+!:", cmd[0]) >= 0 {
				ignore = ignore || cmd[0] == '-'
				cmd = cmd[1:]
			}
			words, err := shellSplit(cmd)
			if err != nil || len(words) == 0 {
				return
			}
			argv := make([]string, 0, len(words))
			for _, w := range words {
				argv = append(argv, w.text)
			}
			if r.runArgv(argv, "systemd "+name) != 0 && !ignore {
				r.log.Debug("unit failed", slog.String("unit", name))
				return
			}
		}
	}
}

// parseNMConnection reads a NetworkManager keyfile.
func parseNMConnection(content string) Network {
	var n Network
	section := ""
	for _, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch {
		case section == "ethernet" && k == "mac-address":
			if hw, err := net.ParseMAC(v); err == nil {
				n.MAC = hw.String()
			}
		case (section == "ipv4" || section == "ipv6") && k == "method":
			if section == "ipv4" && v == "auto" {
				n.DHCP = true
			}
		case (section == "ipv4" || section == "ipv6") && strings.HasPrefix(k, "address"):
			addr, gw, _ := strings.Cut(v, ",")
			n.Addresses = append(n.Addresses, addr)
			if gw != "" && n.Gateway == "" {
				n.Gateway = gw
			}
		case (section == "ipv4" || section == "ipv6") && k == "gateway":
			n.Gateway = v
		case (section == "ipv4" || section == "ipv6") && k == "dns":
			for _, d := range strings.Split(v, ";") {
				if d != "" {
					n.DNS = append(n.DNS, d)
				}
			}
		case (section == "ipv4" || section == "ipv6") && k == "dns-search":
			for _, d := range strings.Split(v, ";") {
				if d != "" {
					n.SearchDomains = append(n.SearchDomains, d)
				}
			}
		}
	}
	return n
}

// --- the image writer and the wiper --------------------------------------------

func (r *run) imageLimit() int64 {
	if r.m.MaxImageBytes > 0 {
		return r.m.MaxImageBytes
	}
	return 1 << 30
}

// parseEnvFile reads POSIX shell assignments (image.env).
func parseEnvFile(b []byte) (map[string]string, error) {
	env := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t'\"") {
			return nil, fmt.Errorf("line %d is not an assignment", i+1)
		}
		words, err := shellSplit(v)
		if err != nil || len(words) > 1 || (len(words) == 1 && words[0].op) {
			return nil, fmt.Errorf("line %d: the value of %s is not one shell word", i+1, k)
		}
		if len(words) == 1 {
			env[k] = words[0].text
		} else {
			env[k] = ""
		}
	}
	return env, nil
}

// imageWriter writes METAL_IMAGE_URL to the target device, seeds the
// written system's cloud-init from METAL_CLOUD_INIT_URL, reports events and
// calls METAL_PROVISIONED_URL.
func (r *run) imageWriter(envURL string, inst Installation) error {
	inst.Kind = InstallerImage
	raw, err := r.fetchConfig(envURL, uaInstaller, false, &inst)
	if err != nil {
		return err
	}
	env, err := parseEnvFile(raw)
	if err != nil {
		return &StageError{Stage: stageOf(envURL), Err: err}
	}
	if a := env["METAL_ACTION"]; a != "install" {
		return installErr("image.env METAL_ACTION=%q, want install", a)
	}
	events := env["METAL_EVENTS_URL"]
	inst.TargetDevice = env["METAL_TARGET_DEVICE"]
	inst.MachineID = env["METAL_MACHINE_ID"]
	if inst.TargetDevice == "" {
		return installErr("image.env has no METAL_TARGET_DEVICE")
	}
	imgURL := env["METAL_IMAGE_URL"]
	if imgURL == "" {
		return installErr("image.env has no METAL_IMAGE_URL")
	}
	r.postEvent(events, "writing-image", "writing the image to "+inst.TargetDevice)
	f, err := r.get(stageOf(imgURL), imgURL, uaInstaller, r.imageLimit())
	if err != nil {
		return err
	}
	if want := env["METAL_IMAGE_SHA256"]; want != "" && !strings.EqualFold(want, f.sha256) {
		return &StageError{Stage: stageOf(imgURL), Err: fmt.Errorf("image has sha256 %s, image.env says %s", f.sha256, want)}
	}
	r.stage(stageOf(imgURL))
	inst.ImageSHA256, inst.ImageSize = f.sha256, int64(len(f.data))
	inst.Hostname = env["METAL_HOSTNAME"]
	if ci := env["METAL_CLOUD_INIT_URL"]; ci != "" {
		s, err := r.fetchSeed(ci, uaInstaller, &inst)
		if err != nil {
			return err
		}
		host := inst.Hostname
		s.apply(&inst)
		if inst.Hostname == "" {
			inst.Hostname = host
		}
		if err := r.checkNetwork(inst.Network, "network-config"); err != nil {
			return err
		}
	}
	r.disk.Install(inst)
	r.postEvent(events, "image-written", "wrote "+strconv.FormatInt(inst.ImageSize, 10)+" bytes to "+inst.TargetDevice)
	prov := env["METAL_PROVISIONED_URL"]
	if prov == "" {
		r.log.Debug("image.env has no METAL_PROVISIONED_URL: nothing reports provisioned")
		return nil
	}
	return r.postProvisioned(prov, uaInstaller, "", nil)
}

// wipe erases the disk (metal.device) and reports on metal.events and
// metal.provisioned.
func (r *run) wipe(args cmdline) error {
	dev := args["metal.device"]
	events := args["metal.events"]
	prov := args["metal.provisioned"]
	if prov == "" {
		return installErr("metal.action=wipe without metal.provisioned")
	}
	what := "the disk"
	if dev != "" {
		what = dev
	}
	r.postEvent(events, "wiping", "wiping "+what)
	r.disk.Wipe()
	r.stage(StageWipe)
	r.postEvent(events, "wiped", "wiped "+what)
	return r.postProvisioned(prov, uaInstaller, "", nil)
}

// cloudConfigFiles carries out cloud-init's write_files: each entry's
// content (encoding plain, b64/base64, gz/gzip, or gz+b64 and the like) by
// path, appended where "append" is true. nil when there are none.
func cloudConfigFiles(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("write_files is a %T, want a list", v)
	}
	files := map[string]string{}
	for i, e := range list {
		f, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("write_files[%d] is a %T, want a mapping", i, e)
		}
		p, _ := f["path"].(string)
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("write_files[%d]: path %q is not absolute", i, p)
		}
		content := ""
		switch c := f["content"].(type) {
		case nil:
		case string:
			content = c
		default:
			content = fmt.Sprint(c)
		}
		data, err := decodeWriteFile(content, fmt.Sprint(f["encoding"]))
		if err != nil {
			return nil, fmt.Errorf("write_files[%d] (%s): %w", i, p, err)
		}
		if appendTo, _ := f["append"].(bool); appendTo {
			data = files[p] + data
		}
		files[p] = data
	}
	if len(files) == 0 {
		return nil, nil
	}
	return files, nil
}

// decodeWriteFile decodes a write_files content by its encoding.
func decodeWriteFile(content, encoding string) (string, error) {
	enc := strings.ToLower(strings.TrimSpace(encoding))
	b64, gz := false, false
	switch enc {
	case "", "<nil>", "text/plain":
	case "b64", "base64":
		b64 = true
	case "gz", "gzip":
		gz = true
	case "gz+b64", "gz+base64", "gzip+b64", "gzip+base64":
		b64, gz = true, true
	default:
		return "", fmt.Errorf("unknown encoding %q", encoding)
	}
	data := []byte(content)
	if b64 {
		d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(content))
		if err != nil {
			return "", fmt.Errorf("encoding %s: %w", encoding, err)
		}
		data = d
	}
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return "", fmt.Errorf("encoding %s: %w", encoding, err)
		}
		d, err := io.ReadAll(io.LimitReader(zr, 64<<20))
		if err != nil {
			return "", fmt.Errorf("encoding %s: %w", encoding, err)
		}
		data = d
	}
	return string(data), nil
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
