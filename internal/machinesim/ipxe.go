package machinesim

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"
)

// Limits that turn a runaway script into an error instead of a hang.
const (
	maxSteps      = 100_000 // commands executed in one NetBoot
	maxChainDepth = 8       // scripts chaining scripts
)

// image is a file iPXE downloaded and registered.
type image struct {
	name, url, stage string
	data             []byte
	sha256           string
	args             []string // command line
	progress         bool     // a progress report, not a boot file
}

func (i *image) isScript() bool { return bytes.HasPrefix(i.data, []byte("#!ipxe")) }

// endRun stops everything: the machine left iPXE (booted a kernel or the
// disk, rebooted, powered off, or hit a script the simulator cannot run).
// err is NetBoot's error.
type endRun struct{ err error }

func (e *endRun) Error() string { return "end of run" }

// gotoLabel is the control result of goto.
type gotoLabel struct{ label string }

func (g *gotoLabel) Error() string { return "goto " + g.label }

// errFalse is the status of a failed test (iseq, isset) or of false.
var errFalse = errors.New("condition is false")

// ipxe is the simulated iPXE of one run.
type ipxe struct {
	r        *run
	settings map[string]string
	images   []*image
	selected *image
	// lastErr is the last failed fetch, reported when the script gives up.
	lastErr error
	steps   int
	depth   int
}

func newIPXE(r *run, l *lease) *ipxe {
	x := &ipxe{r: r, settings: map[string]string{}}
	s := x.settings
	s["mac"] = r.m.MAC.String()
	s["busid"] = ""
	s["platform"] = "pcbios"
	s["buildarch"] = "i386"
	if isEFI(r.m.Arch) {
		s["platform"] = "efi"
		s["buildarch"] = "x86_64"
	}
	if r.m.Arch == iana.EFI_ARM64 || r.m.Arch == iana.EFI_ARM64_HTTP {
		s["buildarch"] = "arm64"
	}
	s["manufacturer"] = "machinesim"
	s["product"] = "Simulated Machine"
	s["version"] = "1.21.1+"
	s["user-class"] = "iPXE"
	s["filename"] = l.bootFile
	if l.ip.IsValid() {
		s["ip"] = l.ip.String()
	}
	if len(l.netmask) == 4 {
		s["netmask"] = net.IP(l.netmask).String()
	}
	if len(l.routers) > 0 {
		s["gateway"] = l.routers[0].String()
	}
	if len(l.dns) > 0 {
		s["dns"] = l.dns[0].String()
	}
	if l.nextServer.IsValid() && !l.nextServer.IsUnspecified() {
		s["next-server"] = l.nextServer.String()
	}
	s["hostname"] = l.hostname
	s["domain"] = l.domain
	return x
}

// autoboot is iPXE's "chain ${filename}" after DHCP.
func (x *ipxe) autoboot() error {
	img, err := x.fetch("script", x.settings["filename"], "", nil)
	if err != nil {
		return err
	}
	if !img.isScript() {
		return &ScriptError{Line: 1, Err: errors.New("the boot file is not an iPXE script (no #!ipxe line)")}
	}
	rc := x.execImage(img)
	var end *endRun
	switch {
	case errors.As(rc, &end):
		return end.err
	case rc != nil:
		return rc
	}
	return &ScriptError{Err: errors.New("the script ended without booting anything")}
}

// execImage executes a script or boots a kernel.
func (x *ipxe) execImage(img *image) error {
	if img.isScript() {
		if x.depth >= maxChainDepth {
			return &endRun{&ScriptError{Err: fmt.Errorf("scripts chained more than %d deep", maxChainDepth)}}
		}
		x.depth++
		defer func() { x.depth-- }()
		return x.runScript(string(img.data))
	}
	return x.bootKernel(img)
}

// runScript executes an iPXE script. It returns nil when the script ran to
// its end, the failing line's status as a *ScriptError, or an *endRun.
func (x *ipxe) runScript(text string) error {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if !strings.HasPrefix(lines[0], "#!ipxe") {
		return &endRun{&ScriptError{Line: 1, Err: errors.New("not an iPXE script (no #!ipxe line)")}}
	}
	labels := map[string]int{}
	for i, l := range lines {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), ":"); ok {
			if _, dup := labels[name]; !dup {
				labels[name] = i
			}
		}
	}
	for pc := 1; pc < len(lines); {
		lineNo := pc + 1
		line := strings.TrimSpace(lines[pc])
		pc++
		if line == "" || line[0] == '#' || line[0] == ':' {
			continue
		}
		words, err := splitCommand(x.expand(line))
		if err != nil {
			return &endRun{&ScriptError{Line: lineNo, Err: err}}
		}
		cmd, rc := x.execLine(words)
		var g *gotoLabel
		var end *endRun
		switch {
		case errors.As(rc, &end):
			var se *ScriptError
			if errors.As(end.err, &se) && se.Line == 0 {
				se.Line = lineNo
			}
			return end
		case errors.As(rc, &g):
			target, ok := labels[g.label]
			if !ok {
				return &endRun{&ScriptError{Line: lineNo, Command: "goto", Err: fmt.Errorf("no label %q", g.label)}}
			}
			pc = target + 1
		case rc != nil:
			// A line whose last command fails aborts the script.
			return &ScriptError{Line: lineNo, Command: cmd, Err: rc}
		}
	}
	return nil
}

// execLine runs the commands of one line joined by &&, || and ;. It returns
// the name of the last command executed and the line's status.
func (x *ipxe) execLine(words []string) (string, error) {
	var (
		rc      error
		last    string
		process = true
	)
	for len(words) > 0 || process {
		i := 0
		for i < len(words) && words[i] != "&&" && words[i] != "||" && words[i] != ";" {
			i++
		}
		argv, sep := words[:i], ""
		if i < len(words) {
			sep = words[i]
			words = words[i+1:]
		} else {
			words = nil
		}
		if process {
			if len(argv) == 0 {
				rc = nil
			} else {
				last = argv[0]
				rc = x.exec(argv)
				var g *gotoLabel
				var end *endRun
				if errors.As(rc, &g) || errors.As(rc, &end) {
					return last, rc
				}
			}
		}
		if sep == "" {
			break
		}
		switch sep {
		case "&&":
			process = rc == nil
		case "||":
			process = rc != nil
		default:
			process = true
		}
	}
	return last, rc
}

// exec runs one command.
func (x *ipxe) exec(argv []string) error {
	x.steps++
	if x.steps > maxSteps {
		return &endRun{&ScriptError{Command: argv[0], Err: fmt.Errorf("the script did not finish after %d commands", maxSteps)}}
	}
	if err := x.r.ctx.Err(); err != nil {
		return &endRun{err}
	}
	cmd, args := argv[0], argv[1:]
	switch cmd {
	case "set":
		if len(args) == 0 {
			return x.usage(cmd)
		}
		name := settingName(args[0])
		if len(args) == 1 {
			delete(x.settings, name)
		} else {
			x.settings[name] = strings.Join(args[1:], " ")
		}
		return nil
	case "clear":
		if len(args) != 1 {
			return x.usage(cmd)
		}
		delete(x.settings, settingName(args[0]))
		return nil
	case "inc":
		if len(args) < 1 || len(args) > 2 {
			return x.usage(cmd)
		}
		name := settingName(args[0])
		v, by := 0, 1
		if s := x.settings[name]; s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%s is not a number", name)
			}
			v = n
		}
		if len(args) == 2 {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return x.usage(cmd)
			}
			by = n
		}
		x.settings[name] = strconv.Itoa(v + by)
		return nil
	case "iseq":
		if len(args) != 2 {
			return x.usage(cmd)
		}
		if args[0] == args[1] {
			return nil
		}
		return errFalse
	case "isset":
		if len(args) != 1 {
			return x.usage(cmd)
		}
		if args[0] != "" {
			return nil
		}
		return errFalse
	case "true":
		return nil
	case "false":
		return errFalse
	case "echo":
		if len(args) > 0 && args[0] == "-n" {
			args = args[1:]
		}
		x.r.log.Debug("ipxe echo", slog.String("text", RedactURL(strings.Join(args, " "))))
		return nil
	case "goto":
		if len(args) != 1 {
			return x.usage(cmd)
		}
		return &gotoLabel{args[0]}
	case "sleep":
		if len(args) != 1 {
			return x.usage(cmd)
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return x.usage(cmd)
		}
		if err := x.r.sleep(time.Duration(n) * time.Second); err != nil {
			return &endRun{err}
		}
		return nil
	case "dhcp", "ifconf", "ifopen", "ifstat", "route", "nslookup":
		// Already configured: the network is up with the lease.
		return nil
	case "kernel", "imgselect", "chain", "imgexec", "initrd", "module", "imgfetch":
		return x.imageCommand(cmd, args)
	case "imgargs":
		if len(args) < 1 {
			return x.usage(cmd)
		}
		img := x.find(args[0])
		if img == nil {
			return fmt.Errorf("no image %q", args[0])
		}
		img.args = append([]string(nil), args[1:]...)
		return nil
	case "imgfree":
		if len(args) > 1 {
			return x.usage(cmd)
		}
		if len(args) == 0 {
			x.images, x.selected = nil, nil
			return nil
		}
		img := x.find(args[0])
		if img == nil {
			return fmt.Errorf("no image %q", args[0])
		}
		x.unregister(img)
		return nil
	case "boot":
		img := x.selected
		if len(args) > 0 {
			img = x.find(args[0])
			if img == nil {
				return fmt.Errorf("no image %q", args[0])
			}
		}
		if img == nil {
			return errors.New("no image selected")
		}
		return x.execImage(img)
	case "sanboot":
		return x.sanboot(args)
	case "exit":
		return x.bootDisk("exit to the firmware")
	case "reboot", "poweroff":
		err := ErrRebooted
		if cmd == "poweroff" {
			err = errors.New("machinesim: the script powered the machine off")
		}
		if x.lastErr != nil {
			err = fmt.Errorf("%w after: %w", err, x.lastErr)
		}
		return &endRun{err}
	}
	return &endRun{&ScriptError{Command: cmd, Err: ErrUnknownCommand}}
}

// usage is the status of a command with wrong arguments: a failure the
// script may handle, as in iPXE.
func (x *ipxe) usage(cmd string) error {
	return fmt.Errorf("%s: invalid arguments", cmd)
}

// imageCommand is kernel/imgselect, chain/imgexec and initrd/module/imgfetch:
// [--name|-n NAME] [--autofree|-a] [--replace|-r] [--timeout|-t MS] URL [ARGS...].
func (x *ipxe) imageCommand(cmd string, args []string) error {
	name := ""
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opt := args[0]
		args = args[1:]
		val, hasVal := "", false
		if k, v, ok := strings.Cut(opt, "="); ok && strings.HasPrefix(opt, "--") {
			opt, val, hasVal = k, v, true
		}
		switch opt {
		case "--name", "-n", "--timeout", "-t":
			if !hasVal {
				if len(args) == 0 {
					return x.usage(cmd)
				}
				val, args = args[0], args[1:]
			}
			if opt == "--name" || opt == "-n" {
				name = val
			}
		case "--autofree", "-a", "--replace", "-r":
		default:
			return &endRun{&ScriptError{Command: cmd, Err: fmt.Errorf("unknown option %q", opt)}}
		}
	}
	if len(args) == 0 {
		return x.usage(cmd)
	}
	img, err := x.fetch("", args[0], name, args[1:])
	if err != nil {
		return err
	}
	switch cmd {
	case "kernel", "imgselect":
		x.selected = img
	case "chain", "imgexec":
		// Executed, not selected: a later bare "boot" does not re-run it.
		return x.execImage(img)
	}
	return nil
}

// fetch downloads and registers an image. stage "" is derived from the URL.
// Progress reports (…/progress/<stage>) are noted in Result.Reported instead
// of Stages and Images.
func (x *ipxe) fetch(stage, rawURL, name string, args []string) (*image, error) {
	if stage == "" {
		stage = stageOf(rawURL)
	}
	limit := x.r.m.MaxImageBytes
	if limit <= 0 {
		limit = 1 << 30
	}
	f, err := x.r.get(stage, rawURL, uaIPXE, limit)
	if err != nil {
		if !strings.HasPrefix(stage, "progress/") {
			x.lastErr = err
		}
		return nil, err
	}
	if name == "" {
		name = path.Base(urlPath(rawURL))
	}
	img := &image{name: name, url: rawURL, stage: stage, data: f.data, sha256: f.sha256, args: append([]string(nil), args...)}
	if old := x.find(name); old != nil {
		x.unregister(old)
	}
	x.images = append(x.images, img)
	if reported, ok := strings.CutPrefix(stage, "progress/"); ok {
		x.r.reported(reported)
		img.progress = true
		return img, nil
	}
	x.r.stage(stage)
	x.r.res.Images = append(x.r.res.Images, Image{Name: name, Stage: stage, Size: int64(len(f.data)), SHA256: f.sha256})
	return img, nil
}

func urlPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Path
}

func (x *ipxe) find(name string) *image {
	for _, img := range x.images {
		if img.name == name {
			return img
		}
	}
	return nil
}

func (x *ipxe) unregister(img *image) {
	for i, o := range x.images {
		if o == img {
			x.images = append(x.images[:i], x.images[i+1:]...)
			break
		}
	}
	if x.selected == img {
		x.selected = nil
	}
}

// sanboot [--no-describe] [--keep] [--drive N] [--filename F] [--extra E]
// [--label L] [--uuid U] [URI...]. Without a URI it boots a local drive.
func (x *ipxe) sanboot(args []string) error {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opt := args[0]
		args = args[1:]
		if k, _, ok := strings.Cut(opt, "="); ok {
			opt = k
			switch opt {
			case "--drive", "--filename", "--extra", "--label", "--uuid":
				continue
			}
			return &endRun{&ScriptError{Command: "sanboot", Err: fmt.Errorf("unknown option %q", opt)}}
		}
		switch opt {
		case "--no-describe", "-n", "--keep", "-k":
		case "--drive", "-d", "--filename", "-f", "--extra", "-e", "--label", "-l", "--uuid", "-u":
			if len(args) == 0 {
				return x.usage("sanboot")
			}
			args = args[1:]
		default:
			return &endRun{&ScriptError{Command: "sanboot", Err: fmt.Errorf("unknown option %q", opt)}}
		}
	}
	if len(args) > 0 {
		return &endRun{&ScriptError{Command: "sanboot", Err: errors.New("booting a SAN target is not simulated")}}
	}
	if _, ok := x.r.disk.Installed(); !ok {
		// The drive has no boot sector: sanboot fails, the script goes on.
		return errors.New("no bootable disk")
	}
	return x.bootDisk("sanboot")
}

// bootDisk leaves iPXE for the local disk (sanboot, or exit to the
// firmware, whose next boot entry is the disk).
func (x *ipxe) bootDisk(how string) error {
	x.r.res.BootedFrom = BootedFromDisk
	x.r.stage(StageDisk)
	inst, ok := x.r.disk.Installed()
	if !ok {
		return &endRun{&StageError{Stage: StageDisk, Err: ErrNoOS}}
	}
	x.r.disk.booted()
	x.r.log.Debug("booted the local disk", slog.String("how", how), slog.String("installed", inst.Kind))
	return &endRun{nil}
}

// bootKernel boots a Linux kernel image with its command line: the
// installer it names runs.
func (x *ipxe) bootKernel(k *image) error {
	var initrds []*image
	for _, img := range x.images {
		if img != k && !img.isScript() && !img.progress {
			initrds = append(initrds, img)
		}
	}
	for _, a := range k.args {
		name, ok := strings.CutPrefix(a, "initrd=")
		if !ok {
			continue
		}
		if len(initrds) == 0 || (isEFI(x.r.m.Arch) && x.find(name) == nil) {
			// The EFI stub loads initrd= by name; nothing to load is fatal.
			return &endRun{&StageError{Stage: "initrd", Err: fmt.Errorf("the kernel command line names initrd %q, which was not downloaded", name)}}
		}
	}
	x.r.res.BootedFrom = BootedFromNetwork
	x.r.log.Debug("booting kernel", slog.String("cmdline", RedactURL(strings.Join(k.args, " "))))
	return &endRun{x.r.install(k, initrds)}
}

// settingName strips a type ("name:int32") and a scope ("net0/name").
func settingName(s string) string {
	s, _, _ = strings.Cut(s, ":")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// expand replaces ${setting} and ${setting:type} references; unknown
// settings expand to nothing, as in iPXE.
func (x *ipxe) expand(line string) string {
	var b strings.Builder
	for {
		i := strings.Index(line, "${")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		j := strings.IndexByte(line[i:], '}')
		if j < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i])
		ref := line[i+2 : i+j]
		line = line[i+j+1:]
		b.WriteString(x.setting(ref))
	}
}

func (x *ipxe) setting(ref string) string {
	name, typ, _ := strings.Cut(ref, ":")
	if k := strings.LastIndexByte(name, '/'); k >= 0 {
		name = name[k+1:]
	}
	v := x.settings[name]
	switch typ {
	case "hexhyp":
		return strings.ReplaceAll(v, ":", "-")
	case "hexraw":
		return strings.ReplaceAll(v, ":", "")
	case "uristring":
		return url.PathEscape(v)
	}
	return v
}

// splitCommand splits a command line into words as iPXE does: blanks
// separate, '...' and "..." quote, a backslash escapes the next character.
// &&, || and ; come out as words of their own when they stand alone.
func splitCommand(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word is being built (possibly empty, from quotes)
		quote byte
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			in = true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
