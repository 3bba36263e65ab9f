# The ID is "<endpoint>#<storage_id>#<volume_id>". Credentials come from the
# provider's bmc_username/bmc_password or METAL_BMC_USERNAME/METAL_BMC_PASSWORD.
terraform import metal_raid_volume.os 'https://10.0.0.11#RAID.Integrated.1-1#Disk.Virtual.0:RAID.Integrated.1-1'
