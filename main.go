// Command terraform-provider-metal is the Terraform provider for bare-metal
// machines driven over Redfish. Run as `serve` it is the boot service
// daemon the provider's remote mode talks to; `token` manages its API
// tokens; `agent` is the role agent on installed machines (the boot
// service serves this very binary to them). With no command it is the
// Terraform plugin.
package main

import (
	"context"
	"flag"
	"log"
	"os"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/composable-metal/terraform-provider-metal/internal/agent"
	"github.com/composable-metal/terraform-provider-metal/internal/daemon"
	"github.com/composable-metal/terraform-provider-metal/internal/provider"
)

// Set by goreleaser through -ldflags.
var (
	version = "dev"
	commit  = ""
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "serve" || os.Args[1] == "token") {
		os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr, version))
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(agent.Main(context.Background(), os.Args[2:], os.Stdout, os.Stderr))
	}

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
