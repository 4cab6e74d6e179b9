#!/usr/bin/env bash
# testhosts.sh — throw-away "machines" for trying ftkv across hosts on one
# Linux box: each host is a network namespace with its own address on a
# private bridge and its own sshd (key-only authentication). Needs root,
# iproute2 and openssh-server. The hosts share this machine's file system,
# so bin/server is at the same path on every one of them.
#
#   scripts/testhosts.sh up DIR [N]     create hosts 1..N (default 3); DIR gets
#                                       the client key (id_ed25519), known_hosts,
#                                       the sshd configs and an "env" file
#   scripts/testhosts.sh down DIR       stop everything up started, remove it
#   scripts/testhosts.sh config DIR [S] print a cluster file: hosts 1..S (default
#                                       all) as servers, the rest as spares
#   scripts/testhosts.sh addr DIR I     print host I's address
#   scripts/testhosts.sh ns DIR I       print host I's namespace name
#   scripts/testhosts.sh hostdown DIR I kill everything on host I, unplug it
#   scripts/testhosts.sh unplug DIR I   take host I's link down (plug: up again)
#   scripts/testhosts.sh partition DIR I ADDR   drop host I's traffic to/from ADDR
#   scripts/testhosts.sh heal DIR I ADDR        undo partition
#
# Names and addresses derive from a small number picked at "up" (kept in
# DIR/env), so several sets can exist at once: namespaces ftkv<K>h<I>,
# bridge ftkv<K>br, addresses 10.213.<K>.<10+I>/24 (the bridge is .1).
set -euo pipefail

die() { echo "testhosts: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: testhosts.sh up|down|addr|ns|hostdown|partition|heal DIR [ARGS]"
cmd=$1
dir=$2
shift 2

load() {
	[ -f "$dir/env" ] || die "$dir/env not found: run 'testhosts.sh up $dir' first"
	# shellcheck disable=SC1091
	. "$dir/env"
}
nsname() { echo "ftkv${K}h$1"; }
addr() { echo "10.213.$K.$((10 + $1))"; }

up() {
	local n=${1:-3}
	[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
	command -v ip >/dev/null || die "ip (iproute2) not found"
	[ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd not found (apt-get install openssh-server)"
	command -v ssh-keygen >/dev/null || die "ssh-keygen not found"
	[ "$n" -ge 1 ] && [ "$n" -le 40 ] || die "N must be 1..40"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ ! -f "$dir/env" ] || die "$dir already holds hosts: run 'testhosts.sh down $dir' first"
	# A free set number: no bridge of that name yet.
	local k
	for k in $(seq 1 200); do
		if ! ip link show "ftkv${k}br" >/dev/null 2>&1 && mkdir "/run/ftkv-testhosts-$k" 2>/dev/null; then
			break
		fi
	done
	K=$k
	printf 'K=%s\nN=%s\nDIR=%s\n' "$K" "$n" "$dir" >"$dir/env"
	trap 'down_quiet' ERR
	local br="ftkv${K}br"
	ip link add "$br" type bridge
	ip addr add "10.213.$K.1/24" dev "$br"
	ip link set "$br" up
	rm -f "$dir/id_ed25519" "$dir/id_ed25519.pub" "$dir/host_ed25519" "$dir/host_ed25519.pub"
	ssh-keygen -q -t ed25519 -N '' -C ftkv-testhosts -f "$dir/id_ed25519" </dev/null
	ssh-keygen -q -t ed25519 -N '' -C ftkv-testhosts-host -f "$dir/host_ed25519" </dev/null
	mkdir -p /run/sshd
	: >"$dir/known_hosts"
	local i ns a
	for i in $(seq 1 "$n"); do
		ns=$(nsname "$i")
		a=$(addr "$i")
		ip netns add "$ns"
		ip link add "ftkv${K}v$i" type veth peer name eth0 netns "$ns"
		ip link set "ftkv${K}v$i" master "$br" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "$a/24" dev eth0
		ip -n "$ns" link set eth0 up
		cp "$dir/id_ed25519.pub" "$dir/authorized_keys_h$i"
		chmod 600 "$dir/authorized_keys_h$i"
		cat >"$dir/sshd_h$i.conf" <<EOF
ListenAddress $a
Port 22
HostKey $dir/host_ed25519
AuthorizedKeysFile $dir/authorized_keys_h$i
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
UsePAM no
StrictModes no
PidFile $dir/sshd_h$i.pid
LogLevel ERROR
MaxStartups 100:30:200
MaxSessions 100
# Spare the sessions the login shell's rc files (bash reads ~/.bashrc
# for ssh commands only at SHLVL 0; this machine's runs pyenv).
SetEnv SHLVL=1
EOF
		ip netns exec "$ns" /usr/sbin/sshd -f "$dir/sshd_h$i.conf" -E "$dir/sshd_h$i.log"
		echo "$a $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >>"$dir/known_hosts"
	done
	# Ready when every sshd answers.
	for i in $(seq 1 "$n"); do
		a=$(addr "$i")
		local ok=
		for _ in $(seq 1 100); do
			if ssh -o BatchMode=yes -o ConnectTimeout=2 -o UserKnownHostsFile="$dir/known_hosts" \
				-o StrictHostKeyChecking=yes -i "$dir/id_ed25519" -o IdentitiesOnly=yes \
				"root@$a" true 2>/dev/null; then
				ok=1
				break
			fi
			sleep 0.1
		done
		[ -n "$ok" ] || die "sshd on $a did not answer"
	done
	trap - ERR
	for i in $(seq 1 "$n"); do
		echo "host $i: root@$(addr "$i") (namespace $(nsname "$i"))"
	done
}

down_quiet() { down >/dev/null 2>&1 || true; }

down() {
	[ -f "$dir/env" ] || return 0
	load
	local i ns p
	for i in $(seq 1 "$N"); do
		ns=$(nsname "$i")
		# Everything in the namespace was started there by us or by the
		# servers our sshd ran: kill it by pid.
		if grep -qw "$ns" <<<"$(ip netns list)"; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do
				kill -9 "$p" 2>/dev/null || true
			done
			ip netns del "$ns" 2>/dev/null || true
		fi
		ip link del "ftkv${K}v$i" 2>/dev/null || true
	done
	ip link del "ftkv${K}br" 2>/dev/null || true
	rmdir "/run/ftkv-testhosts-$K" 2>/dev/null || true
	rm -f "$dir/env"
}

case "$cmd" in
up) up "$@" ;;
down) down ;;
addr) load; addr "$1" ;;
config)
	load
	s=${1:-$N}
	echo "$s"
	for i in $(seq 1 "$N"); do
		if [ "$i" -le "$s" ]; then
			echo "root@$(addr "$i") 0 0 0"
		else
			echo "spare root@$(addr "$i")"
		fi
	done
	echo "ssh_identity $DIR/id_ed25519"
	echo "ssh_known_hosts $DIR/known_hosts"
	;;
unplug) load; ip link set "ftkv${K}v$1" down ;;
plug) load; ip link set "ftkv${K}v$1" up ;;
ns) load; nsname "$1" ;;
hostdown)
	load
	ns=$(nsname "$1")
	for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null || true; done
	ip link set "ftkv${K}v$1" down
	;;
partition)
	load
	ip -n "$(nsname "$1")" route add blackhole "$2/32"
	;;
heal)
	load
	ip -n "$(nsname "$1")" route del blackhole "$2/32"
	;;
*) die "unknown command $cmd" ;;
esac
