# Shared by the guest's lab scripts.
SHARE=/mnt/meshstead
NODES=/srv/nodes

# The node's PID 1 (its systemd), as seen from the guest: the child of nspawn.
node_leader() {
    main=$(systemctl show -p MainPID --value "meshstead-node@$1.service")
    [ -n "$main" ] && [ "$main" != 0 ] || return 1
    for child in $(cat "/proc/$main/task/$main/children" 2>/dev/null); do
        if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
            echo "$child"
            return 0
        fi
    done
    return 1
}

wait_leader() {
    i=0
    while ! node_leader "$1"; do
        i=$((i + 1))
        [ "$i" -lt 600 ] || { echo "node $1: no systemd inside nspawn" >&2; return 1; }
        sleep 0.1
    done
}

# Network interfaces of wiphy phy$1 in the current network namespace.
phy_netdevs() {
    iw dev | awk -v p="phy#$1" '/^phy#/ {cur = $1} $1 == "Interface" && cur == p {print $2}'
}
