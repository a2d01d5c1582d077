#!/bin/sh
# A container on the built-in default root (the host's system dirs, read-only),
# shown next to the host: hostname, PID 1, network and mount view.
set -eu
cd "$(dirname "$0")/.."
hutch=.venv/bin/hutch
SHOW='
echo "hostname:     $(hostname)"
echo "pid 1:        $(cat /proc/1/comm)  (processes visible: $(ls /proc | grep -c "^[0-9]"))"
echo "interfaces:   $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\n" " ")"
echo "mounts:       $(wc -l < /proc/self/mountinfo), root filesystem: $(awk "\$5==\"/\" {print \$9}" /proc/self/mountinfo | tail -1)"
echo "/usr writable: $(test -w /usr && echo yes || echo no)"
echo "capabilities: $(grep CapEff /proc/self/status | cut -f2)"
'
echo "== host =="
sh -c "$SHOW"
echo
echo "== container: hutch run --hostname demo -- sh -c ... =="
$hutch run --hostname demo -- sh -c "$SHOW"
echo
echo "== with a user namespace: root inside is uid 100000 outside =="
$hutch run --userns -- sh -c 'echo "uid_map: $(tr -s " " < /proc/self/uid_map)"; echo "id:      $(id)"'
