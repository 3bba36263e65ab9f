package engine

import (
	"context"

	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
)

func (e *Embedded) BIOS(ctx context.Context, bmc BMC) (out *BIOS, err error) {
	err = e.withBMC(ctx, bmc, false, func(c *redfish.Client) error {
		out, err = c.BIOS()
		return err
	})
	return out, err
}

func (e *Embedded) ApplyBIOS(ctx context.Context, bmc BMC, profile BIOSProfile) (out *BIOSResult, err error) {
	err = e.withBMC(ctx, bmc, true, func(c *redfish.Client) error {
		out, err = c.ApplyBIOS(profile)
		return err
	})
	return out, err
}

func (e *Embedded) Storage(ctx context.Context, bmc BMC) (out []StorageController, err error) {
	err = e.withBMC(ctx, bmc, false, func(c *redfish.Client) error {
		out, err = c.Storage()
		return err
	})
	return out, err
}

func (e *Embedded) CreateVolume(ctx context.Context, bmc BMC, spec VolumeSpec) (out *Volume, err error) {
	err = e.withBMC(ctx, bmc, true, func(c *redfish.Client) error {
		out, err = c.CreateVolume(spec)
		return err
	})
	return out, err
}

func (e *Embedded) DeleteVolume(ctx context.Context, bmc BMC, storageID, volumeID string) error {
	return e.withBMC(ctx, bmc, true, func(c *redfish.Client) error {
		return c.DeleteVolume(storageID, volumeID)
	})
}
