package render

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"unicode/utf8"

	"github.com/composable-metal/terraform-provider-metal/internal/tmplfuncs"
	"gopkg.in/yaml.v3"
)

// userDataType is the MIME type cloud-init gives a user-data part, from
// its first line ("" = not recognised).
func userDataType(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	line = strings.TrimRight(line, " \t\r")
	switch {
	case line == "#cloud-config":
		return "text/cloud-config"
	case line == "#cloud-config-archive":
		return "text/cloud-config-archive"
	case strings.HasPrefix(line, "#!"):
		return "text/x-shellscript"
	case line == "#include-once":
		return "text/x-include-once-url"
	case line == "#include":
		return "text/x-include-url"
	case line == "#cloud-boothook":
		return "text/cloud-boothook"
	case line == "#part-handler":
		return "text/part-handler"
	case strings.HasPrefix(line, "## template:"):
		return "text/jinja2"
	case len(line) > len("content-type:") && strings.EqualFold(line[:len("content-type:")], "content-type:"),
		len(line) > len("mime-version:") && strings.EqualFold(line[:len("mime-version:")], "mime-version:"):
		return "mime"
	}
	return ""
}

// MergeUserData combines the rendered base user-data with the user's:
//
//   - empty user data: the base, unchanged;
//   - both #cloud-config: one #cloud-config document where maps are merged
//     recursively, lists are concatenated (base items first) and on any
//     other conflict the user's value wins;
//   - otherwise a multipart/mixed MIME document: the base first, then the
//     user's data as a part typed from its first line (#!, #include,
//     #cloud-boothook, ...), or the parts of the user's own MIME document.
//
// Anything cloud-init would not recognise is an error.
func MergeUserData(base []byte, user string) ([]byte, error) {
	if strings.TrimSpace(user) == "" {
		return base, nil
	}
	baseType := userDataType(string(base))
	if baseType == "" || baseType == "mime" {
		return nil, errors.New("rendered user-data must start with a cloud-init header such as #cloud-config")
	}
	userType := userDataType(user)
	switch userType {
	case "":
		return nil, &ValidationError{Field: "user_data", Reason: "unrecognised format: must start with #cloud-config, #!, #include, #cloud-boothook, #part-handler, ## template: or a MIME header"}
	case "text/cloud-config":
		if baseType == "text/cloud-config" {
			return mergeCloudConfig(base, user)
		}
	}
	return multipartUserData(base, baseType, user, userType)
}

func mergeCloudConfig(base []byte, user string) ([]byte, error) {
	return mergeCloudConfigAs(base, user, "user_data")
}

// mergeCloudConfigAs deep-merges the #cloud-config user into base; field
// names user in errors.
func mergeCloudConfigAs(base []byte, user, field string) ([]byte, error) {
	var b, u any
	if err := yaml.Unmarshal(base, &b); err != nil {
		return nil, fmt.Errorf("rendered user-data is not YAML: %w", err)
	}
	if err := yaml.Unmarshal([]byte(user), &u); err != nil {
		return nil, &ValidationError{Field: field, Reason: "#cloud-config is not valid YAML: " + err.Error()}
	}
	if u == nil {
		return base, nil
	}
	um, ok := u.(map[string]any)
	if !ok {
		return nil, &ValidationError{Field: field, Reason: "#cloud-config must be a YAML mapping"}
	}
	bm, _ := b.(map[string]any)
	if bm == nil {
		bm = map[string]any{}
	}
	out, err := tmplfuncs.ToYAML(deepMerge(bm, um))
	if err != nil {
		return nil, err
	}
	return []byte("#cloud-config\n" + out + "\n"), nil
}

// deepMerge merges src into dst: maps recursively, lists appended, scalars
// (and type conflicts) replaced by src.
func deepMerge(dst, src map[string]any) map[string]any {
	for k, sv := range src {
		switch d := dst[k].(type) {
		case map[string]any:
			if s, ok := sv.(map[string]any); ok {
				dst[k] = deepMerge(d, s)
				continue
			}
		case []any:
			if s, ok := sv.([]any); ok {
				dst[k] = append(d, s...)
				continue
			}
		}
		dst[k] = sv
	}
	return dst
}

type mimePart struct {
	header textproto.MIMEHeader
	body   []byte
}

func multipartUserData(base []byte, baseType, user, userType string) ([]byte, error) {
	parts := []mimePart{textPart(baseType, "composable-metal.cfg", base)}
	if userType == "mime" {
		up, err := parseMIMEUserData(user)
		if err != nil {
			return nil, &ValidationError{Field: "user_data", Reason: "MIME: " + err.Error()}
		}
		parts = append(parts, up...)
	} else {
		parts = append(parts, textPart(userType, "user-data", []byte(user)))
	}
	sum := sha256.New()
	sum.Write(base)
	sum.Write([]byte(user))
	boundary := "composable-metal-" + hex.EncodeToString(sum.Sum(nil))[:32]

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "Content-Type: multipart/mixed; boundary=%q\r\nMIME-Version: 1.0\r\n\r\n", boundary)
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(boundary); err != nil {
		return nil, err
	}
	for _, p := range parts {
		pw, err := w.CreatePart(p.header)
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write(p.body); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func textPart(mediaType, filename string, body []byte) mimePart {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", mediaType+`; charset="utf-8"`)
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", filename))
	if !utf8.Valid(body) {
		h.Set("Content-Type", mediaType)
		h.Set("Content-Transfer-Encoding", "base64")
		body = []byte(base64.StdEncoding.EncodeToString(body))
	}
	return mimePart{header: h, body: body}
}

// parseMIMEUserData returns the parts of a user-supplied MIME document (or
// the document itself when it is a single part).
func parseMIMEUserData(s string) ([]mimePart, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(strings.NewReader(s)))
	if err != nil {
		return nil, err
	}
	ct := msg.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("Content-Type %q: %w", ct, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := io.ReadAll(msg.Body)
		if err != nil {
			return nil, err
		}
		h := textproto.MIMEHeader{}
		for k, v := range msg.Header {
			if !strings.EqualFold(k, "MIME-Version") {
				h[textproto.CanonicalMIMEHeaderKey(k)] = v
			}
		}
		return []mimePart{{header: h, body: body}}, nil
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var parts []mimePart
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		parts = append(parts, mimePart{header: p.Header, body: body})
	}
	if len(parts) == 0 {
		return nil, errors.New("multipart document has no parts")
	}
	return parts, nil
}
