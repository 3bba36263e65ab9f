package bmcsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.mu.Lock()
	latency, slow := s.latency, s.slowBody
	s.mu.Unlock()

	if latency > 0 && !sleepCtx(r.Context(), latency) {
		s.record(r, 0, "none")
		return
	}

	// Read the body before taking the state lock so a slow client cannot
	// stall the simulator.
	var body []byte
	var bodyErr error
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		body, bodyErr = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	}

	now := s.clock()
	s.mu.Lock()
	drop := s.dropN > 0
	if drop {
		s.dropN--
	}
	fail := 0
	if !drop && s.failN > 0 {
		s.failN--
		fail = s.failStatus
	}
	auth := s.authenticateLocked(r, now)
	var resp *response
	switch {
	case drop:
	case fail != 0:
		resp = s.injected(fail)
	case bodyErr != nil:
		resp = s.errResp(http.StatusRequestEntityTooLarge, msg{id: "GeneralError", severity: "Critical"})
	default:
		resp = s.handleLocked(r, body, auth, now)
	}
	status := 0
	if resp != nil {
		status = resp.status
	}
	s.mu.Unlock()
	s.record(r, status, auth.kind)

	s.log.LogAttrs(r.Context(), slog.LevelDebug, "redfish request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.String("auth", auth.kind),
		slog.Duration("elapsed", time.Since(start)))

	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2 or a non-hijackable writer
	}
	s.write(w, r, resp, slow)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Simulator) write(w http.ResponseWriter, r *http.Request, resp *response, slow time.Duration) {
	var payload []byte
	if resp.body != nil && resp.status != http.StatusNoContent && resp.status != http.StatusNotModified {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(resp.body)
		payload = buf.Bytes()
	}
	h := w.Header()
	maps.Copy(h, resp.header)
	h.Set("OData-Version", "4.0")
	h.Set("Cache-Control", "no-cache")
	if payload != nil {
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(payload)))
	}
	w.WriteHeader(resp.status)
	if payload == nil || r.Method == http.MethodHead {
		return
	}
	if slow > 0 {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if !sleepCtx(r.Context(), slow) {
			return
		}
	}
	_, _ = w.Write(payload)
}

func (s *Simulator) injected(status int) *response {
	var r *response
	switch status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		r = s.errResp(status, msg{id: "ServiceTemporarilyUnavailable", args: []string{"0"}, severity: "Critical",
			resolution: "Wait for the indicated retry duration and retry the operation."})
		r.header.Set("Retry-After", "0")
	default:
		r = s.errResp(status, msg{id: "InternalError", severity: "Critical",
			resolution: "Resubmit the request.  If the problem persists, consider resetting the service."})
	}
	return r
}

// handleLocked routes one request. Caller holds s.mu.
func (s *Simulator) handleLocked(r *http.Request, body []byte, auth authResult, now time.Time) *response {
	path := normPath(r.URL.Path)
	method := r.Method
	sessionsPath := root + "/SessionService/Sessions"

	// Unauthenticated resources (DSP0266 "Requests").
	switch path {
	case "/redfish":
		if method != http.MethodGet && method != http.MethodHead {
			return s.methodNotAllowed(http.MethodGet, http.MethodHead)
		}
		return newResponse(http.StatusOK, map[string]any{"v1": "/redfish/v1/"})
	case root:
		if method != http.MethodGet && method != http.MethodHead {
			return s.methodNotAllowed(http.MethodGet, http.MethodHead)
		}
		return s.get(r, path)
	case root + "/odata":
		if method != http.MethodGet && method != http.MethodHead {
			return s.methodNotAllowed(http.MethodGet, http.MethodHead)
		}
		return newResponse(http.StatusOK, s.odataDoc())
	case sessionsPath:
		if method == http.MethodPost {
			if s.opts.DisableSessionService {
				return s.notFound(r.URL.Path)
			}
			return s.createSession(body, now)
		}
	}

	if auth.kind == "none" {
		return s.unauthorized(auth.tokenGiven)
	}

	segs, _ := segments(path)
	// Action URIs: POST only.
	if len(segs) == 4 && segs[0] == "Systems" && segs[2] == "Actions" && segs[3] == "ComputerSystem.Reset" {
		sys := s.findLocked(segs[1])
		if sys == nil {
			return s.notFound(r.URL.Path)
		}
		if method != http.MethodPost {
			return s.methodNotAllowed(http.MethodPost)
		}
		return s.resetSystem(r, body, sys)
	}

	if resp := s.handleStorageBIOS(r, segs, body, method, path); resp != nil {
		return resp
	}

	exists := s.renderLocked(path) != nil
	if !exists {
		return s.notFound(r.URL.Path)
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return s.get(r, path)
	case http.MethodPatch:
		if len(segs) == 2 && segs[0] == "Systems" {
			return s.patchSystem(r, body, s.findLocked(segs[1]), path)
		}
	case http.MethodPost:
		if path == sessionsPath {
			break // handled above
		}
	case http.MethodDelete:
		if len(segs) == 3 && segs[0] == "SessionService" && segs[1] == "Sessions" {
			return s.deleteSession(segs[2])
		}
	}
	return s.methodNotAllowed(s.allowed(segs)...)
}

func (s *Simulator) allowed(segs []string) []string {
	switch {
	case len(segs) == 2 && segs[0] == "Systems":
		return []string{http.MethodGet, http.MethodHead, http.MethodPatch}
	case len(segs) == 2 && segs[0] == "SessionService" && segs[1] == "Sessions":
		return []string{http.MethodGet, http.MethodHead, http.MethodPost}
	case len(segs) == 4 && segs[0] == "Systems" && segs[2] == "Bios" && segs[3] == "Settings":
		return []string{http.MethodGet, http.MethodHead, http.MethodPatch}
	case len(segs) == 5 && segs[0] == "Systems" && segs[2] == "Storage" && segs[4] == "Volumes":
		return []string{http.MethodGet, http.MethodHead, http.MethodPost}
	case len(segs) == 6 && segs[0] == "Systems" && segs[2] == "Storage" && segs[4] == "Volumes":
		return []string{http.MethodGet, http.MethodHead, http.MethodDelete}
	case len(segs) == 3 && segs[0] == "SessionService" && segs[1] == "Sessions":
		return []string{http.MethodGet, http.MethodHead, http.MethodDelete}
	}
	return []string{http.MethodGet, http.MethodHead}
}

func (s *Simulator) odataDoc() map[string]any {
	val := []any{
		map[string]any{"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"},
		map[string]any{"name": "Systems", "kind": "Singleton", "url": "/redfish/v1/Systems"},
		map[string]any{"name": "Chassis", "kind": "Singleton", "url": "/redfish/v1/Chassis"},
		map[string]any{"name": "Managers", "kind": "Singleton", "url": "/redfish/v1/Managers"},
	}
	if !s.opts.DisableSessionService {
		val = append(val, map[string]any{"name": "SessionService", "kind": "Singleton", "url": "/redfish/v1/SessionService"})
	}
	return map[string]any{"@odata.context": "/redfish/v1/$metadata", "value": val}
}

// get answers GET/HEAD with query handling and conditional GET.
func (s *Simulator) get(r *http.Request, path string) *response {
	q, errResp := s.parseQuery(r.URL.Query())
	if errResp != nil {
		return errResp
	}
	m := s.getLocked(path)
	if m == nil {
		return s.notFound(r.URL.Path)
	}
	etag, _ := m["@odata.etag"].(string)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		resp := newResponse(http.StatusNotModified, nil)
		resp.header.Set("ETag", etag)
		return resp
	}
	resp := newResponse(http.StatusOK, s.applyQuery(m, q))
	resp.header.Set("ETag", etag)
	if segs, _ := segments(path); len(segs) > 0 {
		resp.header.Set("Allow", strings.Join(s.allowed(segs), ", "))
	}
	return resp
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Simulator) createSession(body []byte, now time.Time) *response {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return s.malformed()
	}
	user, uok := req["UserName"].(string)
	pass, pok := req["Password"].(string)
	var missing []msg
	if !uok {
		missing = append(missing, msg{id: "CreateFailedMissingReqProperties", args: []string{"UserName"}, severity: "Critical"})
	}
	if !pok {
		missing = append(missing, msg{id: "CreateFailedMissingReqProperties", args: []string{"Password"}, severity: "Critical"})
	}
	if len(missing) > 0 {
		return s.errResp(http.StatusBadRequest, missing...)
	}
	if !s.credentialsOK(user, pass) {
		return s.unauthorized(false)
	}
	s.pruneSessionsLocked(now)
	s.sessionSeq++
	var id string
	switch s.prof.vendor {
	case Dell, Supermicro:
		id = strconv.Itoa(s.sessionSeq)
	case HPE:
		id = user + "0000000" + randomHex(5) // iLO: "<user>0000000xxxxxxxxxx"
	default:
		id = randomHex(5)
	}
	se := &session{id: id, token: randomHex(16), user: user, lastUsed: now}
	s.sessions[se.token] = se
	s.issued = append(s.issued, se.token)
	resp := newResponse(http.StatusCreated, s.getLocked(root+"/SessionService/Sessions/"+id))
	resp.header.Set("X-Auth-Token", se.token)
	resp.header.Set("Location", s.link(root+"/SessionService/Sessions/"+id))
	return resp
}

func (s *Simulator) deleteSession(id string) *response {
	for tok, se := range s.sessions {
		if se.id == id {
			delete(s.sessions, tok)
			return s.success(s.prof.success)
		}
	}
	return s.notFound(root + "/SessionService/Sessions/" + id)
}

// propMsg is the vendor's message for a property that cannot be written.
func (s *Simulator) propMsg(id, prop, pointer string) msg {
	if s.prof.vendor == HPE {
		return msg{id: "oem:PropertyNotWritableOrUnknown", args: []string{prop}}
	}
	return msg{id: id, args: []string{prop}, severity: "Warning", related: []string{pointer},
		resolution: "Remove the property from the request body and resubmit the request if the operation failed."}
}

func valueMsg(value any, prop, pointer string) msg {
	return msg{id: "PropertyValueNotInList", args: []string{valueString(value), prop}, severity: "Warning", related: []string{pointer},
		resolution: "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."}
}

func typeMsg(value any, prop, pointer string) msg {
	return msg{id: "PropertyValueTypeError", args: []string{valueString(value), prop}, severity: "Warning", related: []string{pointer},
		resolution: "Correct the value for the property in the request body and resubmit the request if the operation failed."}
}

func valueString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func checkEnum(v any, allowed []string, prop, pointer string) (string, *msg) {
	str, ok := v.(string)
	if !ok {
		m := typeMsg(v, prop, pointer)
		return "", &m
	}
	if !slices.Contains(allowed, str) {
		m := valueMsg(v, prop, pointer)
		return "", &m
	}
	return str, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (s *Simulator) patchSystem(r *http.Request, body []byte, sys *system, path string) *response {
	p := s.prof
	cur := s.getLocked(path)
	etag, _ := cur["@odata.etag"].(string)
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return s.malformed()
	}
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		// DSP0266 allows the ETag as an @odata.etag annotation in the body.
		ifMatch, _ = req["@odata.etag"].(string)
	}
	if ifMatch == "" && p.requireIfMatch {
		return s.errResp(http.StatusPreconditionRequired, msg{id: "PreconditionRequired", args: []string{path}, severity: "Critical",
			resolution: "Try the request again with the appropriate precondition header or annotation."})
	}
	if ifMatch != "" && !etagMatch(ifMatch, etag) {
		return s.errResp(http.StatusPreconditionFailed, msg{id: "PreconditionFailed", severity: "Critical",
			resolution: "Try the operation again using the appropriate ETag."})
	}

	var errs []msg
	var newBoot *bootState
	var assetTag, led *string
	var locate *bool
	curBoot, _ := cur["Boot"].(map[string]any)
	for _, k := range sortedKeys(req) {
		v := req[k]
		ptr := "#/" + k
		switch k {
		case "@odata.etag":
		case "Boot":
			bm, ok := v.(map[string]any)
			if !ok {
				errs = append(errs, typeMsg(v, k, ptr))
				continue
			}
			nb := sys.boot
			modeGiven := false
			for _, bk := range sortedKeys(bm) {
				bv := bm[bk]
				bptr := ptr + "/" + bk
				switch bk {
				case "BootSourceOverrideTarget":
					if t, e := checkEnum(bv, p.bootTargets, bk, bptr); e != nil {
						errs = append(errs, *e)
					} else {
						nb.target = t
					}
				case "BootSourceOverrideEnabled":
					if t, e := checkEnum(bv, []string{"Disabled", "Once", "Continuous"}, bk, bptr); e != nil {
						errs = append(errs, *e)
					} else {
						nb.enabled = t
					}
				case "BootSourceOverrideMode":
					if p.rejectOverrideMode {
						// iDRAC10: read-only on UEFI-only platforms.
						errs = append(errs, s.propMsg("PropertyNotWritable", bk, bptr))
						continue
					}
					if t, e := checkEnum(bv, []string{"UEFI", "Legacy"}, bk, bptr); e != nil {
						errs = append(errs, *e)
					} else {
						nb.mode, modeGiven = t, true
					}
				default:
					if _, known := curBoot[bk]; known {
						errs = append(errs, s.propMsg("PropertyNotWritable", bk, bptr))
					} else {
						errs = append(errs, s.propMsg("PropertyUnknown", bk, bptr))
					}
				}
			}
			if !modeGiven && p.modeRevertsIfOmitted {
				// Supermicro: Mode falls back to the default unless resent.
				nb.mode = p.modeRevertValue
			}
			newBoot = &nb
		case "AssetTag":
			switch t := v.(type) {
			case string:
				assetTag = &t
			case nil:
				empty := ""
				assetTag = &empty
			default:
				errs = append(errs, typeMsg(v, k, ptr))
			}
		case "IndicatorLED":
			if t, e := checkEnum(v, []string{"Lit", "Blinking", "Off"}, k, ptr); e != nil {
				errs = append(errs, *e)
			} else {
				led = &t
			}
		case "LocationIndicatorActive":
			if b, ok := v.(bool); ok {
				locate = &b
			} else {
				errs = append(errs, typeMsg(v, k, ptr))
			}
		default:
			if _, known := cur[k]; known {
				errs = append(errs, s.propMsg("PropertyNotWritable", k, ptr))
			} else {
				errs = append(errs, s.propMsg("PropertyUnknown", k, ptr))
			}
		}
	}
	if len(errs) > 0 {
		// All or nothing: nothing is applied when any property fails.
		return s.errResp(http.StatusBadRequest, errs...)
	}
	if newBoot != nil && p.bootPatchBlockedInPOST && s.status(sys).InPOST {
		return s.errResp(http.StatusBadRequest, msg{id: "oem:UnableToModifyDuringSystemPOST", args: []string{"Boot"}})
	}
	if newBoot != nil {
		sys.boot = *newBoot
	}
	if assetTag != nil {
		sys.assetTag = *assetTag
	}
	if led != nil {
		sys.led = *led
	}
	if locate != nil {
		sys.locateLED = *locate
	}
	sys.lastPatch = req
	return s.success(p.success)
}

// conflicts reports whether a reset does not fit the current power state:
// power-on requests while on (or powering on), power-off requests while off,
// and restarts or NMIs while off (or powering off). A power-off request
// while powering off is accepted (a ForceOff cuts a graceful shutdown short).
func conflicts(resetType, state string) bool {
	switch resetType {
	case "On", "ForceOn":
		return isOnState(state)
	case "ForceOff", "GracefulShutdown":
		return state == PowerOff
	case "PushPowerButton":
		return false
	default:
		return !isOnState(state)
	}
}

func (s *Simulator) resetSystem(r *http.Request, body []byte, sys *system) *response {
	p := s.prof
	const action = "ComputerSystem.Reset"
	if p.rejectIfMatchOnAction && r.Header.Get("If-Match") != "" {
		// iDRAC10 rejects If-Match on action URIs.
		return s.errResp(http.StatusPreconditionFailed, msg{id: "PreconditionFailed", severity: "Critical",
			resolution: "Try the operation again using the appropriate ETag."})
	}
	var req map[string]any
	if len(bytes.TrimSpace(body)) == 0 {
		req = map[string]any{}
	} else if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return s.malformed()
	}
	var errs []msg
	for _, k := range sortedKeys(req) {
		if k != "ResetType" {
			errs = append(errs, msg{id: "ActionParameterUnknown", args: []string{action, k}, severity: "Warning",
				resolution: "Correct the invalid parameter and resubmit the request if the operation failed."})
		}
	}
	raw, ok := req["ResetType"]
	if !ok {
		errs = append(errs, msg{id: "ActionParameterMissing", args: []string{action, "ResetType"}, severity: "Critical",
			resolution: "Supply the action with the required parameter in the request body when the request is resubmitted."})
	}
	rt, isString := raw.(string)
	if ok && (!isString || !slices.Contains(p.resetTypes, rt)) {
		errs = append(errs, msg{id: "ActionParameterNotSupported", args: []string{valueString(raw), action}, severity: "Warning",
			resolution: "Remove the parameter supplied and resubmit the request if the operation failed."})
	}
	if len(errs) > 0 {
		return s.errResp(http.StatusBadRequest, errs...)
	}

	state := s.status(sys).State
	on := isOnState(state)
	if conflicts(rt, state) {
		switch p.conflict {
		case conflictDell409:
			id := "oem:PSU502"
			if on {
				id = "oem:PSU501"
			}
			return s.errResp(http.StatusConflict, msg{id: id, severity: "Informational", resolution: "No response action is required."})
		case conflictHPE400:
			state := "Power is off"
			if on {
				state = "Power is on"
			}
			return s.errResp(http.StatusBadRequest, msg{id: "oem:InvalidOperationForSystemState", args: []string{state}})
		case conflictStandby:
			if rt != "On" && rt != "ForceOn" && rt != "ForceOff" && rt != "GracefulShutdown" {
				return s.errResp(http.StatusConflict, msg{id: "ResourceInStandby", severity: "Critical",
					resolution: "Ensure that the resource is in the correct power state and resubmit the request."})
			}
		}
		// Accepted as a no-op.
		sys.resets = append(sys.resets, rt)
		return s.success(p.resetSuccess)
	}
	s.tellBootOverrideLocked(sys)
	if err := sys.power.Reset(r.Context(), rt); err != nil {
		s.log.Warn("power backend reset failed", slog.String("system", sys.spec.ID), slog.String("resetType", rt), slog.Any("err", err))
		return s.errResp(http.StatusInternalServerError, msg{id: "InternalError", severity: "Critical"})
	}
	sys.resets = append(sys.resets, rt)
	s.watchBootsLocked(sys)
	return s.success(p.resetSuccess)
}
