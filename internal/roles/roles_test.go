package roles

import (
	"errors"
	"path"
	"reflect"
	"strings"
	"testing"
)

func ptr(s string) *string { return &s }

func names(rs []Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func TestClosureOrder(t *testing.T) {
	cat := map[string]Role{
		"base":    {Name: "base"},
		"ntp":     {Name: "ntp", Requires: []string{"base"}},
		"runtime": {Name: "runtime", Requires: []string{"base@0123456789ab"}},
		"worker":  {Name: "worker", Requires: []string{"runtime", "ntp"}},
		"monitor": {Name: "monitor", Requires: []string{"base"}},
	}
	tests := []struct {
		selected []string
		want     []string
	}{
		{[]string{"worker"}, []string{"base", "runtime", "ntp", "worker"}},
		{[]string{"monitor", "worker"}, []string{"base", "monitor", "runtime", "ntp", "worker"}},
		{[]string{"worker@ffff", "base"}, []string{"base", "runtime", "ntp", "worker"}},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := Closure(cat, tt.selected)
		if err != nil {
			t.Fatalf("%v: %v", tt.selected, err)
		}
		if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(names(got), tt.want)) {
			t.Errorf("Closure(%v) = %v, want %v", tt.selected, names(got), tt.want)
		}
	}
}

func TestClosureErrors(t *testing.T) {
	cat := map[string]Role{
		"a": {Name: "a", Requires: []string{"b"}},
		"b": {Name: "b", Requires: []string{"c"}},
		"c": {Name: "c", Requires: []string{"a"}},
		"d": {Name: "d", Requires: []string{"ghost"}},
	}
	_, err := Closure(cat, []string{"a"})
	var ce *CycleError
	if !errors.As(err, &ce) || strings.Join(ce.Path, ">") != "a>b>c>a" {
		t.Fatalf("err = %v, want cycle a -> b -> c -> a", err)
	}
	if !strings.Contains(err.Error(), "a -> b -> c -> a") {
		t.Errorf("message %q does not name the cycle", err)
	}
	_, err = Closure(cat, []string{"d"})
	var me *MissingError
	if !errors.As(err, &me) || me.Role != "ghost" || me.RequiredBy != "d" {
		t.Fatalf("err = %v, want ghost required by d", err)
	}
	if _, err := Closure(cat, []string{"nope"}); !errors.As(err, &me) || me.RequiredBy != "" {
		t.Fatalf("err = %v, want a missing selected role", err)
	}
	if err := CheckCatalog(map[string]Role{"x": {Name: "x", Requires: []string{"y"}}, "y": {Name: "y", Requires: []string{"x"}}}); !errors.As(err, &ce) {
		t.Errorf("CheckCatalog = %v, want a cycle", err)
	}
	if got := Dependents(cat, "b"); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("Dependents(b) = %v", got)
	}
}

func TestValidate(t *testing.T) {
	ok := Role{Name: "web", Parameters: map[string]Parameter{"port": {Type: TypeNumber, Default: ptr("80")}},
		Files: []File{{Path: "/etc/web.conf", Content: "port={{ .params.port }}", Mode: "0640", Owner: "www-data:www-data"}}}
	if err := Validate(ok); err != nil {
		t.Fatalf("valid role: %v", err)
	}
	bad := []struct {
		mutate func(*Role)
		field  string
	}{
		{func(r *Role) { r.Name = "Web Server" }, "name"},
		{func(r *Role) { r.Requires = []string{"web"} }, "requires[0]"},
		{func(r *Role) { r.Parameters = map[string]Parameter{"p": {Type: "list"}} }, "parameters.p.type"},
		{func(r *Role) { r.Parameters = map[string]Parameter{"p": {Type: TypeBool, Default: ptr("yes please")}} }, "parameters.p.default"},
		{func(r *Role) { r.Parameters = map[string]Parameter{"a-b": {Type: TypeString}} }, "parameters.a-b"},
		{func(r *Role) { r.Files = []File{{Path: "etc/x"}} }, "files[0].path"},
		{func(r *Role) { r.Files = []File{{Path: "/etc/../x"}} }, "files[0].path"},
		{func(r *Role) { r.Files = []File{{Path: "/a"}, {Path: "/a"}} }, "files[1].path"},
		{func(r *Role) { r.Files = []File{{Path: "/a", Mode: "rw-r--r--"}} }, "files[0].mode"},
		{func(r *Role) { r.Files = []File{{Path: "/a", Owner: "root:"}} }, "files[0].owner"},
		{func(r *Role) { r.Packages = []string{"curl; rm -rf /"} }, "packages[0]"},
		{func(r *Role) { r.Scripts = []string{"echo {{ .params.port "} }, "scripts[0]"},
		{func(r *Role) { r.Scripts = []string{"{{ nosuchfunc }}"} }, "scripts[0]"},
		{func(r *Role) { r.CloudConfig = "packages: [x]" }, "cloud_config"},
	}
	for _, b := range bad {
		r := ok
		b.mutate(&r)
		err := Validate(r)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != b.field || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want a FieldError on it", b.field, err)
		}
	}
}

func TestRender(t *testing.T) {
	base := Role{Name: "base", Files: []File{{Path: "/etc/motd", Content: "host {{ .machine.hostname }} at {{ .machine.ip_address }}\n"}}}
	worker := Role{Name: "worker", Requires: []string{"base"},
		Parameters: map[string]Parameter{
			"endpoint": {Type: TypeString},
			"port":     {Type: TypeNumber, Default: ptr("6443")},
			"debug":    {Type: TypeBool, Default: ptr("false")},
		},
		Files:    []File{{Path: "/etc/worker/{{ .role }}.env", Content: "JOIN={{ .params.endpoint }}:{{ .params.port }}{{ if .params.debug }} -v{{ end }}\n", Mode: "600"}},
		Scripts:  []string{"systemctl restart worker # {{ index .machine.mac_addresses 0 }}"},
		OnRemove: "rm -rf /var/lib/worker",
	}
	cat := map[string]Role{"base": base, "worker": worker}
	ordered, err := Closure(cat, []string{"worker"})
	if err != nil {
		t.Fatal(err)
	}
	facts := Facts{MachineID: "m-1", Hostname: "n1", IPAddress: "192.0.2.10", MACs: []string{"52:54:00:00:00:01"}}
	out, err := Render(ordered, facts, map[string]map[string]string{"worker": {"endpoint": "cp.example", "debug": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Files[0].Content != "host n1 at 192.0.2.10\n" || out[0].Files[0].Mode != "0644" || out[0].Files[0].Owner != "" {
		t.Errorf("base file = %+v", out[0].Files[0])
	}
	wf := out[1].Files[0]
	if wf.Path != "/etc/worker/worker.env" || wf.Content != "JOIN=cp.example:6443 -v\n" || wf.Mode != "0600" {
		t.Errorf("worker file = %+v", wf)
	}
	if out[1].Scripts[0] != "systemctl restart worker # 52:54:00:00:00:01" {
		t.Errorf("script = %q", out[1].Scripts[0])
	}
	rev := Revision(out)

	// Same inputs, same digests; a parameter change changes only worker.
	again, _ := Render(ordered, facts, map[string]map[string]string{"worker": {"endpoint": "cp.example", "debug": "true"}})
	if Revision(again) != rev {
		t.Error("rendering is not deterministic")
	}
	changed, _ := Render(ordered, facts, map[string]map[string]string{"worker": {"endpoint": "cp2.example"}})
	if changed[0].Digest != out[0].Digest || changed[1].Digest == out[1].Digest || Revision(changed) == rev {
		t.Error("a worker parameter change must change worker's digest only")
	}
	// cloud_config is not the agent's: it does not change the digest.
	ccRole := base
	ccRole.CloudConfig = "#cloud-config\ntimezone: UTC\n"
	cc, _ := Render([]Role{ccRole}, facts, nil)
	if cc[0].Digest != out[0].Digest || cc[0].CloudConfig == "" {
		t.Error("cloud_config must be rendered but not change the agent digest")
	}

	st := SeedState(Desired{Revision: rev, Generation: 3, Roles: out})
	if st.Roles["worker"].Digest != out[1].Digest || !reflect.DeepEqual(st.Order, []string{"base", "worker"}) || st.Roles["worker"].Files[0] != "/etc/worker/worker.env" {
		t.Errorf("SeedState = %+v", st)
	}
}

func TestRenderErrors(t *testing.T) {
	facts := Facts{Hostname: "n1"}
	var te *TemplateError
	_, err := Render([]Role{{Name: "r", Scripts: []string{"echo ok", "echo {{ .params.missing }}"}}}, facts, nil)
	if !errors.As(err, &te) || te.Key != "missing" || te.Field != "scripts[1]" || te.Role != "r" {
		t.Fatalf("err = %v, want the missing key named", err)
	}
	if !strings.Contains(err.Error(), `"missing"`) || !strings.Contains(err.Error(), "scripts[1]") {
		t.Errorf("message %q does not name the key and field", err)
	}
	_, err = Render([]Role{{Name: "r", Files: []File{{Path: "/x", Content: "{{ .machine.rack }}"}}}}, facts, nil)
	if !errors.As(err, &te) || te.Key != "rack" {
		t.Errorf("err = %v, want rack named", err)
	}

	var ce *ConflictError
	_, err = Render([]Role{{Name: "a", Files: []File{{Path: "/etc/x"}}}, {Name: "b", Files: []File{{Path: "/etc//x"}}}}, facts, nil)
	if !errors.As(err, &ce) || ce.Roles != [2]string{"a", "b"} || ce.Path != "/etc/x" {
		t.Errorf("err = %v, want a conflict naming a and b", err)
	}

	var pe *ParameterError
	p := Role{Name: "p", Parameters: map[string]Parameter{"n": {Type: TypeNumber}}}
	for _, tc := range []struct {
		values map[string]map[string]string
		param  string
	}{
		{nil, "n"},
		{map[string]map[string]string{"p": {"n": "ten"}}, "n"},
		{map[string]map[string]string{"p": {"n": "1", "extra": "x"}}, "extra"},
		{map[string]map[string]string{"other": {"n": "1"}}, "*"},
	} {
		_, err := Render([]Role{p}, facts, tc.values)
		if !errors.As(err, &pe) || pe.Parameter != tc.param {
			t.Errorf("%v: err = %v, want a ParameterError on %s", tc.values, err, tc.param)
		}
	}
	_, err = Render([]Role{{Name: "r", Files: []File{{Path: "{{ .machine.hostname }}"}}}}, facts, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "files[0].path" {
		t.Errorf("err = %v, want a rendered relative path refused", err)
	}
}

func TestRef(t *testing.T) {
	r := Role{Name: "base", Requires: []string{"a", "b"}}
	r2 := Role{Name: "base", Requires: []string{"a", "b"}}
	if Ref(r) != Ref(r2) || !strings.HasPrefix(Ref(r), "base@") || len(Ref(r)) != len("base@")+12 {
		t.Errorf("Ref = %q / %q", Ref(r), Ref(r2))
	}
	r2.Scripts = []string{"true"}
	if Ref(r) == Ref(r2) {
		t.Error("a content change must change the ref")
	}
	if n, d := ParseRef("base@abc"); n != "base" || d != "abc" {
		t.Errorf("ParseRef = %s %s", n, d)
	}
}

func TestDefaultInstallDirIsNextToTheState(t *testing.T) {
	if want := path.Join(path.Dir(DefaultStatePath), InstallDir); DefaultInstallDir != want {
		t.Fatalf("DefaultInstallDir = %q, want %q", DefaultInstallDir, want)
	}
}
