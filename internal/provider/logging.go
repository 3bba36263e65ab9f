package provider

import (
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/terraform-plugin-log/tflog"
)

// redfishSubsystem is the tflog subsystem BMC traffic is logged under, so
// TF_LOG_PROVIDER_METAL_REDFISH can tune it separately from the provider.
const redfishSubsystem = "redfish"

// secretFieldKeys are log fields whose values are always masked, whatever
// logs them.
var secretFieldKeys = []string{"password", "Password", "token", "X-Auth-Token", "authorization", "Authorization"}

type loggingReadyKey struct{}

// withLogging prepares a request context for engine calls: it creates the
// redfish subsystem logger and masks secrets (field keys that name
// credentials, plus the literal values given) on both the provider's root
// logger and the subsystem. Pass every password in play.
func withLogging(ctx context.Context, secrets ...string) context.Context {
	values := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s != "" {
			values = append(values, s)
		}
	}
	ctx = tflog.NewSubsystem(ctx, redfishSubsystem)
	ctx = tflog.MaskFieldValuesWithFieldKeys(ctx, secretFieldKeys...)
	ctx = tflog.SubsystemMaskFieldValuesWithFieldKeys(ctx, redfishSubsystem, secretFieldKeys...)
	if len(values) > 0 {
		ctx = tflog.MaskLogStrings(ctx, values...)
		ctx = tflog.SubsystemMaskLogStrings(ctx, redfishSubsystem, values...)
	}
	return context.WithValue(ctx, loggingReadyKey{}, true)
}

// tflogHandler is an slog.Handler that forwards records to tflog's "redfish"
// subsystem using the context each record is logged with, so the engine's
// log lines land in Terraform's log with the request they belong to.
type tflogHandler struct {
	attrs  []slog.Attr // already qualified with their group prefix
	prefix string      // open groups, "a.b."
}

var _ slog.Handler = (*tflogHandler)(nil)

// newTflogHandler returns the handler the provider's engine logger uses.
func newTflogHandler() slog.Handler { return &tflogHandler{} }

func (h *tflogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	if ctx == nil || ctx.Value(loggingReadyKey{}) == nil {
		// Handle prepares the subsystem itself; let it decide.
		return true
	}
	switch {
	case level < slog.LevelDebug:
		return tflog.SubsystemIsTrace(ctx, redfishSubsystem)
	case level < slog.LevelInfo:
		return tflog.SubsystemIsDebug(ctx, redfishSubsystem)
	case level < slog.LevelWarn:
		return tflog.SubsystemIsInfo(ctx, redfishSubsystem)
	case level < slog.LevelError:
		return tflog.SubsystemIsWarn(ctx, redfishSubsystem)
	}
	return tflog.SubsystemIsError(ctx, redfishSubsystem)
}

func (h *tflogHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Value(loggingReadyKey{}) == nil {
		ctx = withLogging(ctx)
	}
	fields := make(map[string]any, len(h.attrs)+r.NumAttrs())
	for _, a := range h.attrs {
		addField(fields, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(fields, h.prefix, a)
		return true
	})
	switch {
	case r.Level < slog.LevelDebug:
		tflog.SubsystemTrace(ctx, redfishSubsystem, r.Message, fields)
	case r.Level < slog.LevelInfo:
		tflog.SubsystemDebug(ctx, redfishSubsystem, r.Message, fields)
	case r.Level < slog.LevelWarn:
		tflog.SubsystemInfo(ctx, redfishSubsystem, r.Message, fields)
	case r.Level < slog.LevelError:
		tflog.SubsystemWarn(ctx, redfishSubsystem, r.Message, fields)
	default:
		tflog.SubsystemError(ctx, redfishSubsystem, r.Message, fields)
	}
	return nil
}

func (h *tflogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	out := &tflogHandler{prefix: h.prefix, attrs: make([]slog.Attr, 0, len(h.attrs)+len(attrs))}
	out.attrs = append(out.attrs, h.attrs...)
	for _, a := range attrs {
		a.Key = h.prefix + a.Key
		out.attrs = append(out.attrs, a)
	}
	return out
}

func (h *tflogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &tflogHandler{attrs: h.attrs, prefix: h.prefix + name + "."}
}

// addField flattens a into fields, groups becoming dotted keys. LogValuer
// values are resolved first, so types such as engine.BMC decide what of
// themselves is logged.
func addField(fields map[string]any, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			addField(fields, p, ga)
		}
		return
	}
	key := strings.TrimSuffix(prefix+a.Key, ".")
	switch a.Value.Kind() {
	case slog.KindString:
		fields[key] = a.Value.String()
	case slog.KindInt64:
		fields[key] = a.Value.Int64()
	case slog.KindUint64:
		fields[key] = a.Value.Uint64()
	case slog.KindFloat64:
		fields[key] = a.Value.Float64()
	case slog.KindBool:
		fields[key] = a.Value.Bool()
	case slog.KindDuration, slog.KindTime:
		fields[key] = a.Value.String()
	default:
		if err, ok := a.Value.Any().(error); ok {
			fields[key] = err.Error()
			return
		}
		fields[key] = a.Value.String()
	}
}
