#!/bin/sh
# /init of the test guests. Lines that start with "KF-" on the serial console (ttyS0) are read
# by the rig on the host; ttyS1 is a control channel the rig writes commands to.
/bin/busybox --install -s /bin
/bin/busybox --install -s /sbin
export PATH=/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# qemu-ga keeps its state file in /var/run (a link to /run): it must be writable.
mount -t tmpfs run /run
exec </dev/null >/dev/ttyS0 2>&1

while read -r module; do
    insmod "/lib/modules/$module.ko"
done </lib/modules/order

# kf.hb=SECONDS on the kernel command line: the heartbeat's sleep (default 0.2).
period=0.2
for arg in $(cat /proc/cmdline); do
    case "$arg" in kf.hb=*) period=${arg#kf.hb=} ;; esac
done

# Writes a counter and the guest's uptime to the data disk several times a second, and echoes
# each line to the console only after the write returned: while the filesystem is frozen the
# write blocks, so both the file and the console show the gap.
heartbeat() {
    file="/mnt/data$1/heartbeat"
    i=0
    while :; do
        i=$((i + 1))
        read -r up _idle </proc/uptime
        echo "$i $up" >>"$file"
        echo "KF-HB $1 $i $up"
        sleep "$period"
    done
}

disks=0
for dev in vda vdb vdc vdd; do
    [ -b "/dev/$dev" ] || continue
    disks=$((disks + 1))
    mkdir -p "/mnt/data$disks"
    mount -t ext4 "/dev/$dev" "/mnt/data$disks"
    heartbeat "$disks" &
done

# Without udev there is no /dev/virtio-ports/ link: find the agent's port by its name.
agent_port=""
for port in /sys/class/virtio-ports/*; do
    [ -e "$port/name" ] || continue
    if [ "$(cat "$port/name")" = "org.qemu.guest_agent.0" ]; then
        agent_port="/dev/$(basename "$port")"
    fi
done

# qemu-ga's fsfreeze hook runs before each freeze and after each thaw; it waits as long as the
# rig asked (delay-freeze N / delay-thaw N), to model a slow agent: a real guest's hooks flush a
# database first, Windows VSS writers take seconds. The agent answers nothing meanwhile.
cat >/run/kf-fsfreeze-hook <<'HOOK'
#!/bin/sh
delay=$(/bin/cat "/run/kf-delay-$1" 2>/dev/null)
[ -n "$delay" ] && /bin/sleep "$delay"
exit 0
HOOK
chmod 755 /run/kf-fsfreeze-hook

start_agent() {
    [ -n "$agent_port" ] || return 0
    qemu-ga -m virtio-serial -p "$agent_port" -F/run/kf-fsfreeze-hook &
    echo $! >/run/kf-agent.pid
}

start_agent
echo "KF-READY disks=$disks agent=${agent_port:-none}"

# The control channel: one command a line; each is acknowledged on the console.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
while read -r command; do
    pid=$(cat /run/kf-agent.pid 2>/dev/null)
    case "$command" in
        agent-stop) kill -STOP "$pid" ;;
        agent-cont) kill -CONT "$pid" ;;
        agent-kill) kill -KILL "$pid"; rm -f /run/kf-agent.pid ;;
        agent-start) start_agent ;;
        delay-freeze\ *|delay-thaw\ *) set -- $command; echo "$2" >"/run/kf-$1" ;;
        *) echo "KF-NACK $command"; continue ;;
    esac
    echo "KF-ACK $command"
done </dev/ttyS1

# The control channel closed: keep init alive (the kernel panics when init exits).
while :; do sleep 3600; done
