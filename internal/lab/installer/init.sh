#!/bin/sh
# composable-metal lab installer and lab "installed OS" (one initramfs, two
# roles chosen on the kernel command line). Busybox only.
#
#   metal.config=URL   image writer: fetch image.env (the boot service's
#                      rendered METAL_* variables), download METAL_IMAGE_URL,
#                      check METAL_IMAGE_SHA256, write it to
#                      METAL_TARGET_DEVICE, read it back, POST events to
#                      METAL_EVENTS_URL and POST METAL_PROVISIONED_URL, then
#                      reboot.
#   metal.action=wipe  wiper: erase metal.device, report on metal.events and
#                      metal.provisioned, then reboot.
#   metal.mode=installed
#                      the system written to disk: ask DHCP for an address
#                      (the boot service sees the machine booted) and idle.
#   metal.probe=1      print the probe marker and power off (accelerator probe).
#
# Every URL comes from the command line or image.env: nothing is built here.
export PATH=/bin:/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin

log() { echo "metal-lab: $*"; }

arg() {
	for a in $(cat /proc/cmdline); do
		case "$a" in "$1"=*) echo "${a#*=}"; return 0 ;; esac
	done
	return 1
}

if arg metal.probe >/dev/null; then
	echo "METAL-PROBE-OK"
	poweroff -f
fi

log "loading drivers"
while read -r m; do
	[ -n "$m" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done < /etc/metal-modules

# The first Ethernet interface that shows up.
nic=""
i=0
while [ -z "$nic" ] && [ $i -lt 100 ]; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		[ -e "$d/address" ] && { nic=$n; break; }
	done
	[ -z "$nic" ] && { sleep 0.1; i=$((i+1)); }
done
[ -n "$nic" ] || { log "no network interface"; poweroff -f; }
ip link set lo up
ip link set "$nic" up

mode=installer
arg metal.mode >/dev/null && mode=$(arg metal.mode)
[ "$(arg metal.action)" = wipe ] && mode=wipe
vendor=metal-lab-installer
[ "$mode" = installed ] && vendor=metal-lab-os

log "$mode: DHCP on $nic ($(cat /sys/class/net/$nic/address))"
# Not PXEClient: the boot service gives this client an address only.
if ! udhcpc -i "$nic" -V "$vendor" -s /etc/udhcpc.script -t 20 -T 1 -A 1 -n -q; then
	log "no DHCP lease"
	poweroff -f
fi

if [ "$mode" = installed ]; then
	echo "METAL-LAB-BOOTED-FROM-DISK"
	cat /etc/metal-image 2>/dev/null
	while :; do sleep 3600; done
fi

EVENTS=""
event() { # stage message
	[ -n "$EVENTS" ] || return 0
	msg=$(echo "$2" | tr -d '"\\')
	wget -q -O /dev/null --header 'Content-Type: application/json' \
		--post-data "{\"stage\":\"$1\",\"message\":\"$msg\"}" "$EVENTS" || log "event $1 not accepted"
}
fail() {
	log "FAILED: $*"
	event failed "$*"
	echo "METAL-LAB-INSTALL-FAILED"
	sync
	poweroff -f
}
waitdev() {
	i=0
	while [ ! -b "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
	[ -b "$1" ]
}

if [ "$mode" = wipe ]; then
	EVENTS=$(arg metal.events)
	dev=$(arg metal.device)
	[ -n "$dev" ] || dev=/dev/vda
	waitdev "$dev" || fail "no block device $dev"
	event wiping "wiping $dev"
	dd if=/dev/zero of="$dev" bs=1M count=64 conv=fsync 2>/dev/null
	event wiped "wiped $dev"
	wget -q -O /dev/null --post-data '' "$(arg metal.provisioned)" || fail "the provisioned callback was refused"
	echo "METAL-LAB-WIPED"
	sync
	reboot -f
fi

cfg=$(arg metal.config) || fail "no metal.config= on the kernel command line"
wget -q -O /tmp/image.env "$cfg" || fail "fetching image.env"
. /tmp/image.env
EVENTS=$METAL_EVENTS_URL
[ "$METAL_ACTION" = install ] || fail "image.env METAL_ACTION=$METAL_ACTION, want install"
[ -n "$METAL_IMAGE_URL" ] || fail "image.env has no METAL_IMAGE_URL"
dev=${METAL_TARGET_DEVICE:-/dev/vda}
waitdev "$dev" || fail "no block device $dev"

event writing-image "downloading the image for $dev"
wget -q -O /tmp/image "$METAL_IMAGE_URL" || fail "downloading the image"
sum=$(sha256sum /tmp/image | cut -d' ' -f1)
if [ -n "$METAL_IMAGE_SHA256" ] && [ "$sum" != "$METAL_IMAGE_SHA256" ]; then
	fail "image sha256 $sum, image.env says $METAL_IMAGE_SHA256"
fi
size=$(wc -c < /tmp/image)
dd if=/tmp/image of="$dev" bs=1M conv=fsync 2>/dev/null || fail "writing $dev"
back=$(head -c "$size" "$dev" | sha256sum | cut -d' ' -f1)
[ "$back" = "$sum" ] || fail "read back sha256 $back from $dev, wrote $sum"
event image-written "wrote $size bytes (sha256 $sum) to $dev"
wget -q -O /dev/null --post-data '' "$METAL_PROVISIONED_URL" || fail "the provisioned callback was refused"
echo "METAL-LAB-INSTALLED"
sync
reboot -f
