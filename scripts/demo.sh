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
echo
echo "== a network: a server published on 127.0.0.1:18080, reached by name from a second container =="
root=$(mktemp -d /tmp/hutch-demo.XXXXXX)
net="$hutch --root $root"
cleanup() {
    if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    $net network rm demo >/dev/null 2>&1 || true
    rm -rf "$root"
}
trap cleanup EXIT
$net network create --subnet 10.199.0.0/24 demo >/dev/null
$net run --name web --network demo -p 127.0.0.1:18080:80 -- python3 -c '
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
        self.wfile.write(f"hello from web, you are {self.client_address[0]}\n".encode())
    def log_message(self, *a): pass
print("ready", flush=True)
socketserver.TCPServer(("", 80), H).serve_forever()' > "$root/web.out" &
server=$!
for _ in $(seq 100); do grep -q ready "$root/web.out" 2>/dev/null && break; sleep 0.05; done
echo "from a container:  $($net run --network demo -- python3 -c 'import urllib.request; print(urllib.request.urlopen("http://web/").read().decode(), end="")')"
echo "from the host:     $(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:18080/").read().decode(), end="")')"
$net network inspect demo | python3 -c 'import json,sys; n=json.load(sys.stdin)[0]; print("network:          ", n["name"], n["bridge"], n["subnets"][0]["subnet"], {c: v["ips"] for c, v in n["containers"].items()})'
