package bmcsim

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

type expandMode int

const (
	expandNone    expandMode = iota
	expandNoLinks            // "." : references outside Links
	expandLinks              // "~" : references inside Links
	expandAll                // "*" : both
)

// odataQuery is a parsed, validated set of OData query options.
type odataQuery struct {
	expand expandMode
	levels int
	sel    [][]string // $select paths, split on "/"
}

// parseQuery validates query options against the vendor's capabilities,
// following DSP0266 "Query parameters": unsupported $-parameters -> 501,
// malformed or out-of-range values -> 400, other parameters ignored.
func (s *Simulator) parseQuery(values url.Values) (odataQuery, *response) {
	p := s.prof
	var q odataQuery
	if p.ignoreQueries || len(values) == 0 {
		return q, nil
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	unsupported := func(k string) *response {
		return s.errResp(http.StatusNotImplemented, msg{id: "QueryParameterUnsupported", args: []string{k}, severity: "Warning",
			resolution: "Remove the query parameter and resubmit the request."})
	}
	badFormat := func(k, v string) *response {
		return s.errResp(http.StatusBadRequest, msg{id: "QueryParameterValueFormatError", args: []string{v, k}, severity: "Warning",
			resolution: "Correct the value for the query parameter in the request and resubmit the request."})
	}
	for _, k := range keys {
		v := values.Get(k)
		switch k {
		case "$expand":
			e := p.expand
			if !e.advertised {
				return q, unsupported(k)
			}
			if v == "" {
				return q, badFormat(k, v)
			}
			switch v[0] {
			case '.':
				q.expand = expandNoLinks
				if !e.noLinks {
					return q, unsupported(k + "=" + v)
				}
			case '~':
				q.expand = expandLinks
				if !e.links {
					return q, unsupported(k + "=" + v)
				}
			case '*':
				q.expand = expandAll
				if !e.expandAll {
					return q, unsupported(k + "=" + v)
				}
			default:
				return q, badFormat(k, v)
			}
			q.levels = 1
			if rest := v[1:]; rest != "" {
				inner, ok := strings.CutPrefix(rest, "($levels=")
				inner, ok2 := strings.CutSuffix(inner, ")")
				if !ok || !ok2 {
					return q, badFormat(k, v)
				}
				n, err := strconv.Atoi(inner)
				if err != nil {
					return q, badFormat(k, v)
				}
				if !e.levels {
					return q, unsupported("$levels")
				}
				if n < 1 || n > e.maxLevels {
					return q, s.errResp(http.StatusBadRequest, msg{id: "QueryParameterOutOfRange",
						args: []string{inner, "$levels", "1-" + strconv.Itoa(e.maxLevels)}, severity: "Warning",
						resolution: "Reduce the value for the query parameter to a value that is within range."})
				}
				q.levels = n
			}
		case "$select":
			if !p.selectQuery {
				return q, unsupported(k)
			}
			for _, prop := range strings.Split(v, ",") {
				prop = strings.TrimSpace(prop)
				if prop == "" {
					return q, badFormat(k, v)
				}
				q.sel = append(q.sel, strings.Split(prop, "/"))
			}
		default:
			if strings.HasPrefix(k, "$") {
				// $filter, $top, $skip, $count, ... are not implemented.
				return q, unsupported(k)
			}
			// DSP0266: non-$ parameters that are not understood are ignored.
		}
	}
	if q.expand != expandNone && len(q.sel) > 0 {
		// bmcweb rejects the combination.
		return q, s.errResp(http.StatusBadRequest, msg{id: "QueryCombinationInvalid", severity: "Warning",
			resolution: "Remove one or more of the query parameters and resubmit the request if the operation failed."})
	}
	return q, nil
}

// applyQuery expands and selects a rendered resource. Caller holds s.mu.
func (s *Simulator) applyQuery(m map[string]any, q odataQuery) map[string]any {
	if q.expand != expandNone {
		if em, ok := s.expandNode(m, q.expand, q.levels, false).(map[string]any); ok {
			m = em
		}
	}
	if len(q.sel) > 0 {
		m = selectProps(m, q.sel)
	}
	return m
}

// expandNode replaces navigation references ({"@odata.id": ...} objects and
// nothing else) with the resources they point at, levels deep. Links subtrees
// are expanded only for "~" and "*", everything else only for "." and "*".
func (s *Simulator) expandNode(n any, mode expandMode, levels int, inLinks bool) any {
	switch v := n.(type) {
	case map[string]any:
		if target, ok := refTarget(v); ok {
			want := (inLinks && mode != expandNoLinks) || (!inLinks && mode != expandLinks)
			if !want {
				return v
			}
			res := s.getLocked(normPath(target))
			if res == nil {
				return v // dangling or not simulated: leave the reference
			}
			if levels > 1 {
				return s.expandNode(res, mode, levels-1, false)
			}
			return res
		}
		for k, child := range v {
			v[k] = s.expandNode(child, mode, levels, inLinks || k == "Links")
		}
		return v
	case []any:
		for i, child := range v {
			v[i] = s.expandNode(child, mode, levels, inLinks)
		}
		return v
	}
	return n
}

func refTarget(m map[string]any) (string, bool) {
	if len(m) != 1 {
		return "", false
	}
	id, ok := m["@odata.id"].(string)
	if !ok || strings.Contains(id, "#") {
		return "", false
	}
	return id, true
}

// selectProps keeps the selected properties (and the @odata annotations a
// response must always carry).
func selectProps(m map[string]any, paths [][]string) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"@odata.id", "@odata.type", "@odata.context", "@odata.etag"} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	for _, path := range paths {
		copyPath(out, m, path)
	}
	return out
}

func copyPath(dst, src map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return
	}
	d, ok := dst[path[0]].(map[string]any)
	if !ok {
		d = map[string]any{}
		dst[path[0]] = d
	}
	copyPath(d, sub, path[1:])
}
