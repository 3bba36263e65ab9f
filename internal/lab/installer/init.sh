#!/bin/sh
# composable-metal lab installer and lab "installed OS" (one initramfs, two
# roles chosen on the kernel command line). Busybox only.
#
#   metal.config=URL   image writer: fetch image.env (the boot service's
#                      rendered METAL_* variables), download METAL_IMAGE_URL,
#                      check METAL_IMAGE_SHA256, write it to
#                      METAL_TARGET_DEVICE, read it back, POST events to
#                      METAL_EVENTS_URL and POST METAL_PROVISIONED_URL, then
#                      reboot. With METAL_AGENT_URL (the machine has roles)
#                      it first puts the role agent on the written image's
#                      FAT partition, in /metal.
#   metal.action=wipe  wiper: erase metal.device, report on metal.events and
#                      metal.provisioned, then reboot.
#   metal.mode=installed
#                      the system written to disk: ask DHCP for an address
#                      (the boot service sees the machine booted), run the
#                      role agent if the installer put one on the disk, and
#                      idle.
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

# The role agent lives on the image's FAT partition: /metal holds the
# binary, agent.json and state.json; the files of its roles go under /root
# there (this system runs from its initramfs, so the partition is the only
# place that survives a reboot and that a powered-off disk shows).
start_agent() {
	part=""
	i=0
	while [ -z "$part" ] && [ $i -lt 30 ]; do
		part=$(findfs LABEL=METALOS 2>/dev/null)
		[ -z "$part" ] && { sleep 0.1; i=$((i+1)); }
	done
	[ -z "$part" ] && [ -b /dev/vda1 ] && part=/dev/vda1
	[ -n "$part" ] || { log "no METALOS partition: no role agent"; return 0; }
	mkdir -p /mnt
	# Look read-only first: a read-write vfat mount marks the file system
	# dirty until it is unmounted, and a machine without the agent keeps
	# its disk as written.
	mount -t vfat -o ro "$part" /mnt 2>/dev/null || { log "cannot mount $part: no role agent"; return 0; }
	if [ ! -f /mnt/metal/agent.json ] || [ ! -x /mnt/metal/metal-agent ]; then
		umount /mnt
		return 0
	fi
	umount /mnt
	# sync: machines are powered off without a shutdown, so every write
	# must reach the disk at once. vfat holds neither owners nor modes:
	# everything is root's with mode 0700 (agent.json holds the machine's
	# credential), and quiet makes the agent's chown and chmod succeed.
	mount -t vfat -o rw,sync,quiet,fmask=0077,dmask=0077 "$part" /mnt || { log "cannot mount $part read-write: no role agent"; return 0; }
	mkdir -p /mnt/root
	echo "METAL-LAB-AGENT-STARTED"
	(
		while :; do
			/mnt/metal/metal-agent agent -config /mnt/metal/agent.json -state /mnt/metal/state.json -root /mnt/root </dev/null
			log "role agent exited ($?); restarting in 5s"
			sleep 5
		done
	) &
}

if [ "$mode" = installed ]; then
	echo "METAL-LAB-BOOTED-FROM-DISK"
	cat /etc/metal-image 2>/dev/null
	start_agent
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
# partdev DISK: the disk's first partition (vda1, nvme0n1p1).
partdev() {
	case "$1" in
	*[0-9]) echo "${1}p1" ;;
	*) echo "${1}1" ;;
	esac
}
# install_agent DISK: put the role agent on the image just written to DISK
# (see start_agent). METAL_AGENT_STATE_B64 is not used: it records the
# install-time roles as applied, which holds where the image's cloud-init
# applies METAL_CLOUD_INIT_URL; this image has no cloud-init, so the agent
# starts without a state and applies them at first boot.
install_agent() {
	part=$(partdev "$1")
	blockdev --rereadpt "$1" 2>/dev/null || partprobe "$1" 2>/dev/null
	waitdev "$part" || fail "no partition $part on $1 after writing the image"
	mkdir -p /mnt
	mount -t vfat -o quiet "$part" /mnt || fail "mounting $part to install the role agent"
	mkdir -p /mnt/metal /mnt/root
	event installing-agent "downloading the role agent to $part"
	wget -q -O /mnt/metal/metal-agent "$METAL_AGENT_URL" || fail "downloading the role agent from $METAL_AGENT_URL"
	echo "$METAL_AGENT_CONFIG_B64" | base64 -d > /mnt/metal/agent.json || fail "decoding METAL_AGENT_CONFIG_B64"
	grep -q '"credential"' /mnt/metal/agent.json || fail "METAL_AGENT_CONFIG_B64 is not an agent configuration"
	n=$(wc -c < /mnt/metal/metal-agent)
	sync
	umount /mnt || fail "unmounting $part"
	event agent-installed "role agent ($n bytes) and its configuration on $part"
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
[ -n "$METAL_AGENT_URL" ] && install_agent "$dev"
wget -q -O /dev/null --post-data '' "$METAL_PROVISIONED_URL" || fail "the provisioned callback was refused"
echo "METAL-LAB-INSTALLED"
sync
reboot -f
