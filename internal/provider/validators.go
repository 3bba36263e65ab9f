package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// endpointValidator checks a BMC endpoint at plan time without contacting it.
type endpointValidator struct{}

var _ validator.String = endpointValidator{}

func (endpointValidator) Description(context.Context) string {
	return "value must be https://host[:port] or https://host[:port]/redfish/v1/Systems/<id>"
}

func (v endpointValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (endpointValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, err := engine.ParseEndpoint(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid BMC Endpoint",
			"Set `endpoint` to https://host[:port] (http:// only for simulators and labs), optionally followed by "+
				"/redfish/v1/Systems/<id>, with no credentials, query or fragment.\n\nOriginal Error: "+err.Error())
	}
}

// durationValidator accepts a positive Go duration string such as "2s".
type durationValidator struct{}

var _ validator.String = durationValidator{}

func (durationValidator) Description(context.Context) string {
	return `value must be a positive duration such as "500ms", "2s" or "1m"`
}

func (v durationValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err != nil || d <= 0 {
		detail := fmt.Sprintf("%q is not a positive duration. Use a number with a unit, such as \"500ms\", \"2s\" or \"1m\".", req.ConfigValue.ValueString())
		if err != nil {
			detail += "\n\nOriginal Error: " + err.Error()
		}
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Duration", detail)
	}
}
