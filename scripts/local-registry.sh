#!/bin/sh
# local-registry.sh start|stop|status — the node-local image registry "registry.local".
#
# Runs Debian's docker-registry (package docker-registry, `registry serve CONFIG`) as a plain
# HTTP registry on port 80 of every IPv4 address, with storage under /var/lib/u7s-registry,
# and maps registry.local to the host's primary address in /etc/hosts. The node's containers
# reach it through that address, never through 127.0.0.1: the rootless namespace has no host
# loopback. Fill it with `u7s images build --registry registry.local/k8s-p10 --push`.
set -eu

NAME=registry.local
MARK='# u7s-local-registry'
PORT=80
STORAGE=/var/lib/u7s-registry
CONFIG=/etc/u7s/local-registry.yml
PIDFILE=/run/u7s-registry.pid
LOGFILE=/var/log/u7s-registry.log
HOSTS=/etc/hosts

die() { echo "local-registry: $*" >&2; exit 1; }
say() { echo "local-registry: $*"; }

registry_bin() {
	for b in registry docker-registry; do
		if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return; fi
	done
	die "no registry binary (registry or docker-registry): apt-get install docker-registry"
}

# host_ip prints the first IPv4 address of the default-route interface.
host_ip() {
	dev=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
	[ -n "$dev" ] || die "no IPv4 default route: cannot tell the host's primary address (the node's containers reach $NAME through it)"
	ip=$(ip -4 -o addr show dev "$dev" scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
	[ -n "$ip" ] || die "interface $dev of the default route has no global IPv4 address"
	echo "$ip"
}

# running prints the registry's pid if the pid file names a live registry process.
running() {
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "serve $CONFIG" || return 1
	echo "$pid"
}

answers() { curl -fsS -o /dev/null --max-time 2 "http://$1:$PORT/v2/" 2>/dev/null; }

write_config() {
	mkdir -p "$(dirname "$CONFIG")" "$STORAGE"
	tmp=$CONFIG.tmp
	cat >"$tmp" <<EOF
# Written by scripts/local-registry.sh on every start; edits are lost.
version: 0.1
log:
  level: info
  fields:
    service: u7s-registry
storage:
  filesystem:
    rootdirectory: $STORAGE
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 0.0.0.0:$PORT
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
	mv "$tmp" "$CONFIG"
}

# rewrite_hosts FILTER: runs /etc/hosts through an awk program, in place (it may be a bind
# mount, which rename cannot replace).
rewrite_hosts() {
	tmp=$(mktemp)
	awk "$1" "$HOSTS" >"$tmp"
	if ! cmp -s "$tmp" "$HOSTS"; then cat "$tmp" >"$HOSTS"; fi
	rm -f "$tmp"
}

# ensure_hosts IP: one active, marked line "IP registry.local", refusing to shadow a foreign one.
ensure_hosts() {
	ip=$1
	foreign=$(awk -v n="$NAME" -v m="$MARK" 'index($0, m) == 0 && $1 !~ /^#/ { for (i = 2; i <= NF && $i !~ /^#/; i++) if ($i == n) { print $1; exit } }' "$HOSTS")
	if [ -n "$foreign" ] && [ "$foreign" != "$ip" ]; then
		die "$HOSTS already maps $NAME to $foreign (not a line of this script): remove that line, or run the registry there"
	fi
	if [ "$foreign" = "$ip" ]; then
		rewrite_hosts "index(\$0, \"$MARK\") == 0"
		return
	fi
	line="$ip $NAME $MARK"
	if ! grep -qxF "$line" "$HOSTS"; then
		rewrite_hosts "index(\$0, \"$MARK\") == 0"
		# Never glue the line to a last line that lacks its newline.
		if [ -s "$HOSTS" ] && [ -n "$(tail -c1 "$HOSTS")" ]; then echo >>"$HOSTS"; fi
		echo "$line" >>"$HOSTS"
		say "added '$line' to $HOSTS"
	fi
}

start() {
	[ "$(id -u)" = 0 ] || die "run as root (it binds port $PORT and edits $HOSTS)"
	command -v curl >/dev/null || die "curl is missing: apt-get install curl"
	bin=$(registry_bin)
	ip=$(host_ip)
	if pid=$(running); then
		say "already running (pid $pid)"
	else
		if ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
			die "port $PORT is taken: $(ss -Hltnp "sport = :$PORT" | head -1)"
		fi
		write_config
		mkdir -p "$(dirname "$LOGFILE")"
		# A daemon of its own session, detached from the caller's terminal.
		setsid "$bin" serve "$CONFIG" </dev/null >>"$LOGFILE" 2>&1 &
		echo $! >"$PIDFILE"
		say "started $bin (pid $!), log $LOGFILE"
	fi
	ensure_hosts "$ip"
	i=0
	until answers 127.0.0.1 && answers "$ip"; do
		i=$((i + 1))
		if [ $i -ge 100 ] || ! running >/dev/null; then
			tail -n 20 "$LOGFILE" >&2 || true
			die "the registry does not answer on http://$ip:$PORT/v2/ (log above, $LOGFILE)"
		fi
		sleep 0.1
	done
	say "$NAME = http://$ip:$PORT, storage $STORAGE"
}

stop() {
	[ "$(id -u)" = 0 ] || die "run as root"
	if pid=$(running); then
		kill "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -ge 100 ]; then kill -KILL "$pid" 2>/dev/null || true; fi
			sleep 0.1
		done
		say "stopped (pid $pid); images stay in $STORAGE"
	else
		say "not running"
	fi
	rm -f "$PIDFILE"
	if grep -qF "$MARK" "$HOSTS"; then
		rewrite_hosts "index(\$0, \"$MARK\") == 0"
		say "removed $NAME from $HOSTS"
	fi
}

status() {
	rc=0
	if pid=$(running); then
		echo "running: pid $pid, config $CONFIG, log $LOGFILE, storage $STORAGE"
	else
		echo "not running"
		rc=3
	fi
	line=$(grep -F "$MARK" "$HOSTS" || true)
	echo "hosts: ${line:-no $NAME line of this script in $HOSTS}"
	if [ $rc = 0 ]; then
		ip=$(host_ip)
		for a in 127.0.0.1 "$ip"; do
			if answers "$a"; then echo "http://$a:$PORT/v2/: answers"; else echo "http://$a:$PORT/v2/: NO ANSWER"; rc=1; fi
		done
		repos=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT/v2/_catalog" 2>/dev/null || true)
		echo "catalog: ${repos:-?}"
	fi
	return $rc
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
restart) stop && start ;;
*)
	echo "usage: $0 start|stop|status|restart" >&2
	exit 2
	;;
esac
