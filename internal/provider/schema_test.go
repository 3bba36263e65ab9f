package provider

import (
	"testing"

	dsschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
)

// Every attribute, nested ones included, documents itself for the registry.
func TestSchemasDescribeEveryAttribute(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	rs := machineResourceSchemaV0(ctx)
	if rs.Version != 0 {
		t.Errorf("metal_machine schema version %d", rs.Version)
	}
	if diags := rs.ValidateImplementation(ctx); diags.HasError() {
		t.Fatalf("metal_machine schema: %v", diags)
	}
	var walkResource func(prefix string, attrs map[string]rschema.Attribute)
	walkResource = func(prefix string, attrs map[string]rschema.Attribute) {
		for name, a := range attrs {
			if a.GetMarkdownDescription() == "" {
				t.Errorf("metal_machine attribute %s%s has no MarkdownDescription", prefix, name)
			}
			switch n := a.(type) {
			case rschema.SingleNestedAttribute:
				walkResource(prefix+name+".", n.Attributes)
			case rschema.ListNestedAttribute:
				walkResource(prefix+name+".", n.NestedObject.Attributes)
			}
		}
	}
	walkResource("", rs.Attributes)
	for name, b := range rs.Blocks {
		if b.GetMarkdownDescription() == "" {
			t.Errorf("metal_machine block %s has no MarkdownDescription", name)
		}
		if nb, ok := b.(rschema.SingleNestedBlock); ok {
			walkResource(name+".", nb.Attributes)
		}
	}

	ds := machineInventoryDataSourceSchemaV0(ctx)
	if diags := ds.ValidateImplementation(ctx); diags.HasError() {
		t.Fatalf("metal_machine_inventory schema: %v", diags)
	}
	var walkDataSource func(prefix string, attrs map[string]dsschema.Attribute)
	walkDataSource = func(prefix string, attrs map[string]dsschema.Attribute) {
		for name, a := range attrs {
			if a.GetMarkdownDescription() == "" {
				t.Errorf("metal_machine_inventory attribute %s%s has no MarkdownDescription", prefix, name)
			}
			switch n := a.(type) {
			case dsschema.SingleNestedAttribute:
				walkDataSource(prefix+name+".", n.Attributes)
			case dsschema.ListNestedAttribute:
				walkDataSource(prefix+name+".", n.NestedObject.Attributes)
			}
		}
	}
	walkDataSource("", ds.Attributes)
	for name, b := range ds.Blocks {
		if b.GetMarkdownDescription() == "" {
			t.Errorf("metal_machine_inventory block %s has no MarkdownDescription", name)
		}
		if nb, ok := b.(dsschema.SingleNestedBlock); ok {
			walkDataSource(name+".", nb.Attributes)
		}
	}
}
