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

	for name, rs := range map[string]rschema.Schema{
		"metal_machine":  machineResourceSchemaV0(ctx),
		"metal_os_image": osImageResourceSchemaV0(ctx),
	} {
		if rs.Version != 0 {
			t.Errorf("%s schema version %d", name, rs.Version)
		}
		if diags := rs.ValidateImplementation(ctx); diags.HasError() {
			t.Fatalf("%s schema: %v", name, diags)
		}
		var walkResource func(prefix string, attrs map[string]rschema.Attribute)
		walkResource = func(prefix string, attrs map[string]rschema.Attribute) {
			for attrName, a := range attrs {
				if a.GetMarkdownDescription() == "" {
					t.Errorf("%s attribute %s%s has no MarkdownDescription", name, prefix, attrName)
				}
				switch n := a.(type) {
				case rschema.SingleNestedAttribute:
					walkResource(prefix+attrName+".", n.Attributes)
				case rschema.ListNestedAttribute:
					walkResource(prefix+attrName+".", n.NestedObject.Attributes)
				}
			}
		}
		walkResource("", rs.Attributes)
		for blockName, b := range rs.Blocks {
			if b.GetMarkdownDescription() == "" {
				t.Errorf("%s block %s has no MarkdownDescription", name, blockName)
			}
			if nb, ok := b.(rschema.SingleNestedBlock); ok {
				walkResource(blockName+".", nb.Attributes)
			}
		}
	}

	for name, ds := range map[string]dsschema.Schema{
		"metal_machine_inventory":   machineInventoryDataSourceSchemaV0(ctx),
		"metal_discovered_machines": discoveredMachinesDataSourceSchemaV0(),
	} {
		if diags := ds.ValidateImplementation(ctx); diags.HasError() {
			t.Fatalf("%s schema: %v", name, diags)
		}
		var walkDataSource func(prefix string, attrs map[string]dsschema.Attribute)
		walkDataSource = func(prefix string, attrs map[string]dsschema.Attribute) {
			for attrName, a := range attrs {
				if a.GetMarkdownDescription() == "" {
					t.Errorf("%s attribute %s%s has no MarkdownDescription", name, prefix, attrName)
				}
				switch n := a.(type) {
				case dsschema.SingleNestedAttribute:
					walkDataSource(prefix+attrName+".", n.Attributes)
				case dsschema.ListNestedAttribute:
					walkDataSource(prefix+attrName+".", n.NestedObject.Attributes)
				}
			}
		}
		walkDataSource("", ds.Attributes)
		for blockName, b := range ds.Blocks {
			if b.GetMarkdownDescription() == "" {
				t.Errorf("%s block %s has no MarkdownDescription", name, blockName)
			}
			if nb, ok := b.(dsschema.SingleNestedBlock); ok {
				walkDataSource(blockName+".", nb.Attributes)
			}
		}
	}
}
