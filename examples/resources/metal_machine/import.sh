# Credentials come from the provider's bmc_username/bmc_password or
# METAL_BMC_USERNAME/METAL_BMC_PASSWORD, never from the ID.

# A BMC that manages a single system:
terraform import metal_machine.node1 https://10.0.0.11

# A BMC that manages several: <endpoint>#<system_id>
terraform import metal_machine.node2 'https://10.0.0.12#System.Embedded.1'
