package machinesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The installers' scripts (kickstart %pre/%post, cloud-init runcmd,
// systemd ExecStart lines) are shell. The simulator runs the part that
// talks to the boot service, curl, and treats every other command as a
// successful no-op (unless Machine.Exec takes it): it cannot create files
// or partitions anyway, and the Installation records what the configs say
// instead.

// shellWord is a word or an operator (&&, ||, ;, |, &, >, >>, <) of a
// shell command line.
type shellWord struct {
	text string
	op   bool
}

// shellSplit splits a POSIX shell command line: blanks separate words,
// '...' quotes literally, "..." quotes with \ escaping " \ $ `, a
// backslash outside quotes escapes the next character, # at the start of a
// word starts a comment. Variables are not expanded.
func shellSplit(line string) ([]shellWord, error) {
	var (
		out  []shellWord
		cur  strings.Builder
		in   bool
		flip = func() {
			if in {
				out = append(out, shellWord{text: cur.String()})
				cur.Reset()
				in = false
			}
		}
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch c {
		case '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated '")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			in = true
		case '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New(`unterminated "`)
			}
			in = true
		case '\\':
			if i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
				in = true
			}
		case ' ', '\t', '\n':
			flip()
		case '#':
			if !in {
				return out, nil
			}
			cur.WriteByte(c)
		case '&', '|', ';', '>', '<':
			flip()
			op := string(c)
			if i+1 < len(line) && (c == '&' || c == '|' || c == '>') && line[i+1] == c {
				op += string(c)
				i++
			}
			out = append(out, shellWord{text: op, op: true})
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	flip()
	return out, nil
}

// runShellScript runs a script line by line (backslash-newline joins
// lines), without set -e: a failing line does not stop the script (its
// exit status is not looked at either: anaconda and cloud-init only log it).
func (r *run) runShellScript(script, what string) {
	script = strings.ReplaceAll(script, "\\\n", " ")
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words, err := shellSplit(line)
		if err != nil {
			r.log.Debug("shell line does not parse", slog.String("in", what), slog.Any("error", err))
			continue
		}
		if r.runShellLine(words, what) || r.ctx.Err() != nil {
			return
		}
	}
}

// runShellLine runs commands joined by &&, || and ; (| is treated like ;,
// redirections are dropped). It reports whether the line ran "exit".
func (r *run) runShellLine(words []shellWord, what string) (exit bool) {
	status, process := 0, true
	for len(words) > 0 {
		i := 0
		var argv []string
		for ; i < len(words); i++ {
			w := words[i]
			if !w.op {
				argv = append(argv, w.text)
				continue
			}
			if w.text == ">" || w.text == ">>" || w.text == "<" {
				i++ // drop the target
				continue
			}
			break
		}
		sep := ""
		if i < len(words) {
			sep = words[i].text
			words = words[i+1:]
		} else {
			words = nil
		}
		if process && len(argv) > 0 {
			if argv[0] == "exit" {
				return true
			}
			status = r.runArgv(argv, what)
		}
		switch sep {
		case "&&":
			process = status == 0
		case "||":
			process = status != 0
		default:
			process = true
		}
	}
	return false
}

// runArgv runs one command: curl for real, everything else as a no-op.
func (r *run) runArgv(argv []string, what string) int {
	if r.m.Exec != nil {
		if status, ok := r.m.Exec(r.ctx, argv); ok {
			return status
		}
	}
	name := argv[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	switch name {
	case "curl":
		return r.curl(argv[1:])
	case "true", ":":
		return 0
	case "false":
		return 1
	}
	r.log.Debug("command not simulated (no-op)", slog.String("in", what), slog.String("command", name))
	return 0
}

// curlRequest is a parsed curl command line.
type curlRequest struct {
	method     string
	url        string
	header     http.Header
	data       []string
	fail       bool
	retry      int
	retryDelay time.Duration
	retryAll   bool
}

// curl exit codes used.
const (
	curlOK          = 0
	curlUsage       = 2
	curlCouldntConn = 7
	curlHTTPError   = 22
	curlReadFile    = 26
)

func parseCurl(args []string) (*curlRequest, error) {
	c := &curlRequest{header: http.Header{}}
	withArg := map[string]bool{"X": true, "H": true, "d": true, "m": true, "o": true, "A": true, "e": true, "u": true, "w": true}
	set := func(opt, val string) error {
		switch opt {
		case "X", "--request":
			c.method = val
		case "H", "--header":
			k, v, ok := strings.Cut(val, ":")
			if !ok {
				return fmt.Errorf("bad header %q", val)
			}
			c.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "d", "--data", "--data-raw", "--data-binary", "--data-ascii":
			if strings.HasPrefix(val, "@") && opt != "--data-raw" {
				return errReadFile
			}
			c.data = append(c.data, val)
		case "--json":
			c.data = append(c.data, val)
			c.header.Set("Content-Type", "application/json")
			c.header.Set("Accept", "application/json")
		case "A", "--user-agent":
			c.header.Set("User-Agent", val)
		case "--retry":
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("bad --retry %q", val)
			}
			c.retry = n
		case "--retry-delay":
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("bad --retry-delay %q", val)
			}
			c.retryDelay = time.Duration(n) * time.Second
		}
		return nil
	}
	longWithArg := map[string]bool{"--request": true, "--header": true, "--data": true, "--data-raw": true, "--data-binary": true,
		"--data-ascii": true, "--json": true, "--max-time": true, "--connect-timeout": true, "--output": true, "--user-agent": true,
		"--retry": true, "--retry-delay": true, "--retry-max-time": true, "--referer": true, "--user": true, "--write-out": true}
	longBool := map[string]bool{"--fail": true, "--silent": true, "--show-error": true, "--location": true, "--insecure": true,
		"--retry-connrefused": true, "--retry-all-errors": true, "--verbose": true, "--fail-with-body": true, "--compressed": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "--"):
			opt, val, hasVal := strings.Cut(a, "=")
			switch {
			case longWithArg[opt]:
				if !hasVal {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("option %s needs a value", opt)
					}
					i++
					val = args[i]
				}
				if err := set(opt, val); err != nil {
					return nil, err
				}
			case longBool[opt]:
				switch opt {
				case "--fail", "--fail-with-body":
					c.fail = true
				case "--retry-all-errors":
					c.retryAll = true
				}
			default:
				return nil, fmt.Errorf("option %s is not simulated", opt)
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for j := 1; j < len(a); j++ {
				f := string(a[j])
				if withArg[f] {
					val := a[j+1:]
					if val == "" {
						if i+1 >= len(args) {
							return nil, fmt.Errorf("option -%s needs a value", f)
						}
						i++
						val = args[i]
					}
					if err := set(f, val); err != nil {
						return nil, err
					}
					break
				}
				switch f {
				case "f":
					c.fail = true
				case "s", "S", "L", "k", "v", "q":
				default:
					return nil, fmt.Errorf("option -%s is not simulated", f)
				}
			}
		default:
			if c.url != "" {
				return nil, errors.New("more than one URL")
			}
			c.url = a
		}
	}
	if c.url == "" {
		return nil, errors.New("no URL")
	}
	if c.method == "" {
		c.method = http.MethodGet
		if len(c.data) > 0 {
			c.method = http.MethodPost
		}
	}
	if len(c.data) > 0 && c.header.Get("Content-Type") == "" {
		c.header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return c, nil
}

var errReadFile = errors.New("reading data from a file is not simulated")

// retryableStatus are the answers curl --retry retries.
func retryableStatus(s int) bool {
	switch s {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// curl performs a curl command line and returns its exit status. Calls to
// the boot service's events and provisioned routes are recorded.
func (r *run) curl(args []string) int {
	c, err := parseCurl(args)
	if err != nil {
		r.log.Debug("curl: unsupported command line", slog.Any("error", err))
		if errors.Is(err, errReadFile) {
			return curlReadFile
		}
		return curlUsage
	}
	stage := stageOf(c.url)
	body := []byte(strings.Join(c.data, "&"))
	ua := c.header.Get("User-Agent")
	if ua == "" {
		ua = uaCurl
	}
	c.header.Del("User-Agent")
	var (
		status int
		serr   error
	)
	delay := c.retryDelay
	for attempt := 0; ; attempt++ {
		status, serr = r.send(stage, c.method, c.url, "", ua, body, c.header)
		retry := serr != nil || retryableStatus(status) || (c.retryAll && status >= 400)
		if !retry || attempt >= c.retry || r.ctx.Err() != nil {
			break
		}
		d := delay
		if d == 0 {
			d = time.Second << min(attempt, 9)
		}
		if r.sleep(d) != nil {
			break
		}
	}
	code := curlOK
	switch {
	case serr != nil:
		code = curlCouldntConn
	case status >= 400 && c.fail:
		code = curlHTTPError
	}
	switch stage {
	case "provisioned":
		r.provisionedAnswer(c.method, c.url, status, serr)
	case "events":
		if serr == nil && status/100 == 2 {
			var ev struct {
				Stage string `json:"stage"`
			}
			if json.Unmarshal(body, &ev) == nil && ev.Stage != "" {
				r.reported(ev.Stage)
			}
		}
	}
	return code
}

// provisionedAnswer records the answer to a provisioned callback, however
// it was made: 2xx marks the run provisioned, anything else is kept as the
// run's provisioned error.
func (r *run) provisionedAnswer(method, rawURL string, status int, err error) {
	if err == nil && status/100 == 2 {
		if !r.res.Provisioned {
			r.res.Provisioned = true
			r.stage("provisioned")
		}
		r.provisionedErr = nil
		return
	}
	if err != nil {
		var se *StageError
		if errors.As(err, &se) {
			r.provisionedErr = se
			return
		}
		r.provisionedErr = &StageError{Stage: "provisioned", Method: method, URL: RedactURL(rawURL), Err: err}
		return
	}
	r.provisionedErr = &StageError{Stage: "provisioned", Method: method, URL: RedactURL(rawURL), Status: status,
		Err: fmt.Errorf("HTTP %d %s", status, http.StatusText(status))}
}
