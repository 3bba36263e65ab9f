# A role is imported by its name.
terraform import metal_role.base base
