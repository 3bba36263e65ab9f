# The ID is the image's name in the boot service. The boot service does not
# record where the files came from, so the first apply after import checks the
# configuration's files against the recorded sums and adopts its url,
# kernel_args and templates in place.
terraform import metal_os_image.ubuntu ubuntu-24.04
