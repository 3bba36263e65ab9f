// Command terraform-provider-metal is the Terraform provider for bare-metal
// machines driven over Redfish.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/composable-metal/terraform-provider-metal/internal/provider"
)

// Set by goreleaser through -ldflags.
var (
	version = "dev"
	commit  = ""
)

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()

	opts := providerserver.ServeOpts{
		Address:         "registry.terraform.io/composable-metal/metal",
		Debug:           debug,
		ProtocolVersion: 6,
	}
	p := provider.New(version, commit)
	err := providerserver.Serve(context.Background(), p.Factory, opts)
	// Terraform closes the plugin gracefully when a run ends, so this is the
	// last chance to log BMC sessions out.
	p.Shutdown()
	if err != nil {
		log.Fatal(err.Error())
	}
}
