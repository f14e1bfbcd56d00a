#!/usr/bin/env bash
# The system-call floor beneath every binary, end to end. Deny-by-default must hold whatever a
# program is linked with: a dynamic C program calling syscall(SYS_connect), the same program
# linked statically, a Go program with cgo (dynamic) and without (static) each fail to reach a
# loopback listener that was not allowed, and the listener sees no connection (asserted on the
# listener, not on the programs' output). --allow lets one through; a program's own loopback
# server works; a datagram sent with sendmsg is refused and never arrives; io_uring is refused; a program the preload does not reach replays inside the
# private view without touching the workspace; a cgo-linked Go binary is named as Go.
# Usage: floor_test.sh TAPEDECK NET_PROBE NET_PROBE_STATIC SOURCE_DIR
set -uo pipefail
td=$(realpath "$1")
probe=$(realpath "$2")
probe_static=$(realpath "$3")
here=$(realpath "$4")
source "$(dirname "$0")/../harness.sh"
listener_pid=
on_exit+=('[ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null')

# A loopback listener that writes one line per connection it accepts.
start_listener() {
  "$python" -u -c '
import socket, sys
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(16)
print(server.getsockname()[1], flush=True)
while True:
    connection, _ = server.accept(); print("accepted", flush=True); connection.close()
' > "$work/listener.out" &
  listener_pid=$!
  for _ in $(seq 100); do [ -s "$work/listener.out" ] && break; sleep 0.05; done
  port=$(head -1 "$work/listener.out")
}
accepted() { sleep 0.2; grep -c accepted "$work/listener.out"; }

if ! command -v go > /dev/null; then
  echo "FAIL: go is missing (scripts/install-deps.sh installs Debian's golang-go)" >&2
  exit 1
fi
export GOCACHE=$work/gocache GOPATH=$work/gopath GOFLAGS=-mod=mod GO111MODULE=off
(cd "$here" && go build -o "$work/dial-cgo" dial.go && CGO_ENABLED=0 go build -o "$work/dial-static" dial.go) ||
  { echo "FAIL: cannot build the Go dialer" >&2; exit 1; }

start_listener
mkdir -p "$work/ws" && cd "$work/ws"
"$probe" connect "$port" > "$work/native.out"
check "natively the probe reaches the listener" test "$(accepted)" = 1
for program in "$probe" "$probe_static" "$work/dial-cgo" "$work/dial-static"; do
  name=$(basename "$program")
  if [[ $name == dial-* ]]; then args=("$port"); else args=(connect "$port"); fi
  "$td" run -- "$program" "${args[@]}" > "$work/$name.out" 2> "$work/$name.err"
  check "run: $name is refused" test $? -ne 0
  check "run: $name is named in the denial" grep -q "network denied: connect to 127.0.0.1:$port by" "$work/$name.err"
done
check "run: the listener saw none of those four connects" test "$(accepted)" = 1
"$td" run --allow "127.0.0.1:$port" -- "$probe_static" connect "$port" > /dev/null 2>&1
check "run --allow 127.0.0.1:PORT lets the static probe through" test "$(accepted)" = 2

"$td" run --emit-tape "$work/refused.tape" -- "$probe_static" connect "$port" > /dev/null 2>&1
"$td" replay "$work/refused.tape" -- "$probe_static" connect "$port" > /dev/null 2> "$work/replay.err"
check "replay: the static probe is refused too" grep -q "network denied" "$work/replay.err"
check "replay: the listener saw nothing more" test "$(accepted)" = 2

"$td" run --json -- "$probe" connect "$port" > /dev/null 2> "$work/json.err"
check "--json says the floor held" grep -q '"floor":true' "$work/json.err"

cat > "$work/own_server.py" <<'EOF'
import socket, threading
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
threading.Thread(target=lambda: server.accept()[0].sendall(b"hello from its own server")).start()
print(socket.create_connection(server.getsockname()).recv(100).decode())
EOF
"$td" run --emit-tape "$work/own.tape" -- "$python" "$work/own_server.py" > "$work/own.out" 2>&1
check "run: a program's own loopback server is reachable (internal)" grep -q "hello from its own server" "$work/own.out"
"$td" replay "$work/own.tape" -- "$python" "$work/own_server.py" > "$work/own-replay.out" 2>&1
check "replay: likewise" grep -q "hello from its own server" "$work/own-replay.out"

# Datagrams: sendmsg and sendmmsg name their destination behind a pointer; the floor reads it.
# A UDP receiver counts what reaches it.
"$python" -u -c '
import socket
receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); receiver.bind(("127.0.0.1", 0))
print(receiver.getsockname()[1], flush=True)
while True:
    receiver.recv(100); print("datagram", flush=True)
' > "$work/receiver.out" &
on_exit+=("kill $! 2>/dev/null")
for _ in $(seq 100); do [ -s "$work/receiver.out" ] && break; sleep 0.05; done
udp_port=$(head -1 "$work/receiver.out")
datagrams() { sleep 0.2; grep -c datagram "$work/receiver.out"; }
cat > "$work/datagram.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendmsg([b"x"], [], 0, ("127.0.0.1", int(sys.argv[1])))
    print("sent")
except OSError as error:
    print("refused:", error.strerror)
EOF
"$python" "$work/datagram.py" "$udp_port" > /dev/null
check "natively the datagram arrives" test "$(datagrams)" = 1
"$td" run -- "$python" "$work/datagram.py" "$udp_port" > "$work/datagram.out" 2> "$work/datagram.err"
check "run: a sendmsg to an address not allowed is refused" grep -q "refused: Connection refused" "$work/datagram.out"
check "run: and named" grep -q "network denied: sendmsg to 127.0.0.1:$udp_port" "$work/datagram.err"
check "run: the receiver got nothing more" test "$(datagrams)" = 1
"$td" run --allow "127.0.0.1:$udp_port" -- "$python" "$work/datagram.py" "$udp_port" > /dev/null 2>&1
check "run --allow lets it through" test "$(datagrams)" = 2

"$td" run -- "$probe_static" io_uring > "$work/uring.out" 2>&1
check "io_uring_setup is refused (ENOSYS), static or not" grep -q "io_uring: Function not implemented" "$work/uring.out"

check "a cgo-linked Go binary is named as a Go program" grep -q "is a Go program" "$work/dial-cgo.err"

# A program the preload does not reach writes into the workspace: recorded for real, replayed
# inside the private view; the workspace keeps what the recording left.
"$td" run --emit-tape "$work/write.tape" -- "$probe_static" write output.txt recorded > /dev/null 2>&1
check "run: the static program wrote the workspace" grep -q recorded output.txt
rm output.txt
"$td" replay "$work/write.tape" -- "$probe_static" write output.txt replayed > "$work/write.out" 2>&1
check "replay: it ran" grep -q "write: written" "$work/write.out"
check "replay: nothing reached the workspace" test ! -e output.txt

finish floor
