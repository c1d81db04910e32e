#!/usr/bin/env bash
# A local Docker Swarm for tests, benchmarks and trying swarm mode on one machine: N nodes, each
# a container running its own dockerd (Debian's docker.io, image berth/swarm-node:bookworm from
# build-images.sh), on a private bridge network of their own. One manager and N-1 workers.
# Each node's engine socket is bind-mounted at DIR/<node>/sock/docker.sock, which is what
# berth's `engine.nodes` points at; images are copied into every node (no registry needed).
#
#   swarm-nodes.sh up DIR PREFIX SUBNET N [IMAGE...]   prints the `engine:` section for berth.yaml
#   swarm-nodes.sh stop DIR PREFIX NODE                 stops one node (its tasks are lost to the swarm)
#   swarm-nodes.sh down DIR PREFIX                      removes the nodes, their network and DIR
#
# The nodes are not privileged: this kernel's sandbox refuses CAP_SYS_RESOURCE, so they get every
# other capability, unconfined seccomp/AppArmor and the host's cgroup tree (each dockerd puts its
# containers under /berth-swarm/<node>).
set -euo pipefail
cmd=$1 dir=$2 prefix=$3

nodes() { docker ps -a --filter "label=io.berth.swarm-test=$prefix" --format '{{.Names}}'; }

up() {
  local subnet=$1 n=$2; shift 2
  mkdir -p "$dir"
  docker network inspect "$prefix" >/dev/null 2>&1 \
    || docker network create --subnet "$subnet" --label "io.berth.swarm-test=$prefix" "$prefix" >/dev/null
  local names=("$prefix-m1")
  for i in $(seq 1 $((n - 1))); do names+=("$prefix-w$i"); done
  for name in "${names[@]}"; do
    mkdir -p "$dir/$name/sock" "$dir/$name/data"
    docker run -d --name "$name" --hostname "$name" --network "$prefix" \
      --label "io.berth.swarm-test=$prefix" \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
      -v /sys/fs/cgroup:/sys/fs/cgroup -v /lib/modules:/lib/modules:ro \
      -v "$dir/$name/sock:/run/berth-node" -v "$dir/$name/data:/var/lib/docker" \
      --tmpfs /run --tmpfs /tmp \
      berth/swarm-node:bookworm \
      -H unix:///run/berth-node/docker.sock --cgroup-parent "/berth-swarm/$name" \
      --bip 172.31.255.1/24 >/dev/null
  done
  for name in "${names[@]}"; do
    for _ in $(seq 1 60); do
      docker -H "unix://$dir/$name/sock/docker.sock" info >/dev/null 2>&1 && break
      sleep 0.5
    done
  done
  local m="docker -H unix://$dir/$prefix-m1/sock/docker.sock"
  local addr
  addr=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$prefix\").IPAddress}}" "$prefix-m1")
  if [ "$($m info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
    $m swarm init --advertise-addr "$addr" --default-addr-pool 10.233.0.0/16 >/dev/null
  fi
  local token
  token=$($m swarm join-token -q worker)
  for name in "${names[@]:1}"; do
    local w="docker -H unix://$dir/$name/sock/docker.sock"
    [ "$($w info -f '{{.Swarm.LocalNodeState}}')" = active ] || $w swarm join --token "$token" "$addr:2377" >/dev/null
  done
  if [ $# -gt 0 ]; then
    docker save "$@" > "$dir/images.tar"
    for name in "${names[@]}"; do
      docker -H "unix://$dir/$name/sock/docker.sock" load -q < "$dir/images.tar" >/dev/null &
    done
    wait
    rm -f "$dir/images.tar"
  fi
  echo "engine:"
  echo "  mode: swarm"
  echo "  manager: $dir/$prefix-m1/sock/docker.sock"
  echo "  nodes:"
  for name in "${names[@]}"; do echo "    $name: $dir/$name/sock/docker.sock"; done
}

case $cmd in
  up) up "$4" "$5" "${@:6}" ;;
  stop) docker stop -t 2 "$4" >/dev/null ;;
  down)
    for c in $(nodes); do docker rm -f -v "$c" >/dev/null 2>&1 || true; done
    docker network rm "$prefix" >/dev/null 2>&1 || true
    # The nodes' own files (image layers, volumes) belong to root inside them; remove as root.
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 up|stop|down DIR PREFIX ..." >&2; exit 2 ;;
esac
