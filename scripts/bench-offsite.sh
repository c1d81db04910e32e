#!/usr/bin/env bash
# Off-host backup benchmark on the real engine, side by side in one run (docs/BENCHMARKS.md):
# a WordPress tenant with UPLOAD_MIB MiB of incompressible uploads (1 MiB files), its backups
# copied by berth into a restic repository (a local path), against restic run by hand on the
# same data: (a) the same archive through `restic backup --stdin`, (b) the tenant's volume
# directory and a `mariadb-dump` through `restic backup`, what an operator would script.
#  1. first backup: time, bytes the repository grew by, the agent's peak RSS;
#  2. NIGHTS nightly backups, each after replacing 1 % of the uploads: time and bytes added
#     each, the repository's size after them all;
#  3. restore from the repository with the host's archives gone vs `restic restore` by hand.
# Usage: scripts/bench-offsite.sh [UPLOAD_MIB=1024] [NIGHTS=30]. Needs build-images.sh lamp.
set -eEuo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
NIGHTS=${2:-30}
REG=19493
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh lamp >/dev/null
for c in restic docker-registry jq; do command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }; done
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-offbench.XXXX)
mkdir -p "$W/instances" "$W/registry" "$W/raw" "$W/keys"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/repo.key"; chmod 600 "$W/keys/repo.key"
cat > "$W/registry/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $W/registry/data}}
http: {addr: 127.0.0.1:$REG}
YAML
cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: offbench
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: bench.test
api: {socket: berth.sock}
network: {subnet_pool: 10.253.0.0/16, subnet_prefix: 28}
resync_interval: 30s
plans:
  wp: {memory: 1g, cpus: 1, pids: 500, backups: {keep: 2}}
registry_mirrors: {docker.io: "127.0.0.1:$REG"}
backup_repositories:
  bench: {url: $W/repo-berth, password_file: keys/repo.key}
YAML
STAND_INS="berth/mariadb:10.11=mariadb:11.4 berth/wordpress:6.1=wordpress:6.6-apache"
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null || true
  [ -n "${REGPID:-}" ] && kill "$REGPID" 2>/dev/null || true
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  docker ps -aq --filter label=io.berth.namespace=offbench | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=offbench | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=offbench | xargs -r docker volume rm >/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
trap 'echo "bench-offsite: failed at line $LINENO; agent log:" >&2; tail -n 20 "$W/agent.log" >&2' ERR
b() { "$B" --config "$W/berth.yaml" "$@"; }
r() { RESTIC_PASSWORD_FILE="$W/keys/repo.key" RESTIC_CACHE_DIR="$W/cache" restic -r "$@"; }
now() { date +%s%3N; }
ms_since() { echo $(( $(now) - $1 )); }

setsid docker-registry serve "$W/registry/config.yml" >"$W/registry.log" 2>&1 < /dev/null &
REGPID=$!
until curl -fsS -o /dev/null "http://127.0.0.1:$REG/v2/"; do sleep 0.1; done
for p in $STAND_INS; do
  docker tag "${p%%=*}" "127.0.0.1:$REG/library/${p#*=}"
  docker push -q "127.0.0.1:$REG/library/${p#*=}" >/dev/null
done
for repo in repo-berth repo-stdin repo-dir; do r "$W/$repo" init -q; done

setsid "$B" --config "$W/berth.yaml" serve >"$W/agent.log" 2>&1 < /dev/null &
AGENT=$!
until b reconcile >/dev/null 2>&1; do sleep 0.1; done
b add wp1 --template wordpress --plan wp --set admin_email=ops@example.com --wait >/dev/null
WEB=offbench-wp1-web DB=offbench-wp1-db
VOL=$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/var/www/html"}}{{.Source}}{{end}}{{end}}' "$WEB")
docker exec "$WEB" sh -c "mkdir -p /var/www/html/wp-content/uploads/bench && cd /var/www/html/wp-content/uploads/bench && \
  for i in \$(seq 1 $MIB); do head -c 1048576 /dev/urandom > f\$i.bin; done && chown -R www-data: ."
CHANGE=$(( MIB / 100 > 0 ? MIB / 100 : 1 ))
change_1pct() { # CHANGE of the MIB files replaced by new random ones (1 %)
  docker exec "$WEB" sh -c "cd /var/www/html/wp-content/uploads/bench && \
    for i in \$(shuf -i 1-$MIB -n $CHANGE); do head -c 1048576 /dev/urandom > f\$i.bin; done"
}

# The agent's RSS, sampled every 100 ms into $W/rss (KiB), while $1 runs.
peak_rss() {
  : > "$W/rss"
  ( while kill -0 "$AGENT" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$AGENT/status" >> "$W/rss"; sleep 0.1; done ) &
  SAMPLER=$!
  "$@"
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=
}
max_rss() { sort -n "$W/rss" | tail -1; }

berth_backup() { # → "ms bytes_added copy_seconds id"
  local t0 out; t0=$(now)
  out=$(b backup wp1 -o json)
  echo "$(ms_since "$t0") $(echo "$out" | jq -r '.offsite[0].bytes_added, .offsite[0].seconds, .id' | tr '\n' ' ')"
}
stdin_backup() { # the archive berth made, by hand → "ms bytes_added"
  local t0 out; t0=$(now)
  out=$(r "$W/repo-stdin" backup --json --quiet --stdin --stdin-filename wp1.tar < "$W/state/backups/wp1/$1.tar" | tail -1)
  echo "$(ms_since "$t0") $(echo "$out" | jq -r .data_added)"
}
dir_backup() { # mariadb-dump + the volume directory, by hand → "ms bytes_added"
  local t0 out pw='MYSQL_PWD="$(cat /run/secrets/db_password)"; export MYSQL_PWD'; t0=$(now)
  docker exec "$DB" sh -c "$pw; exec mariadb-dump -h 127.0.0.1 -u wordpress --single-transaction --routines --triggers wordpress" > "$W/raw/dump.sql"
  out=$(r "$W/repo-dir" backup --json --quiet "$VOL" "$W/raw/dump.sql" | tail -1)
  echo "$(ms_since "$t0") $(echo "$out" | jq -r .data_added)"
}

echo "== 1. first backup, $MIB MiB of uploads"
peak_rss berth_backup > "$W/first"; read -r t added copy id < "$W/first"
echo "berth backup (dump + tar + archive + copy): $t ms; copy $copy s; repository +$added bytes; agent peak RSS $(max_rss) KiB"
read -r t added < <(stdin_backup "$id"); echo "by hand, restic backup --stdin of the same archive: $t ms; +$added bytes"
read -r t added < <(dir_backup); echo "by hand, mariadb-dump + restic backup of the volume: $t ms; +$added bytes"

echo "== 2. $NIGHTS nightly backups, $CHANGE MiB ($CHANGE of $MIB files) replaced before each"
: > "$W/nights"
for n in $(seq 1 "$NIGHTS"); do
  change_1pct
  peak_rss berth_backup > "$W/night"; read -r bt badd bcopy id < "$W/night"; brss=$(max_rss)
  read -r st sadd < <(stdin_backup "$id")
  read -r dt dadd < <(dir_backup)
  echo "$n $bt $badd $bcopy $brss $st $sadd $dt $dadd" | tee -a "$W/nights"
done
awk '{bt+=$2; ba+=$3; bc+=$4; if ($5>rss) rss=$5; st+=$6; sa+=$7; dt+=$8; da+=$9} END {
  printf "mean per night: berth %.0f ms (copy %.2f s), +%.1f MiB, agent peak RSS %d KiB | by hand --stdin %.0f ms, +%.1f MiB | by hand dir %.0f ms, +%.1f MiB\n",
    bt/NR, bc/NR, ba/NR/1048576, rss, st/NR, sa/NR/1048576, dt/NR, da/NR/1048576 }' "$W/nights"
for repo in repo-berth repo-stdin repo-dir; do
  echo "$repo after 1 + $NIGHTS backups: $(du -sb "$W/$repo" | cut -f1) bytes"
done

echo "== 3. restore with the host's archives gone"
rm -f "$W"/state/backups/wp1/*.tar
peak_rss sh -c "t0=\$(date +%s%3N); '$B' --config '$W/berth.yaml' restore wp1 --from '$id' >/dev/null; echo \$(( \$(date +%s%3N) - t0 )) > '$W/restore_ms'"
echo "berth restore (fetch + safety backup + load + volume replace): $(cat "$W/restore_ms") ms; agent peak RSS $(max_rss) KiB"
t0=$(now); r "$W/repo-berth" dump latest /wp1.tar > "$W/raw/dumped.tar"; echo "by hand, restic dump of berth's snapshot: $(ms_since "$t0") ms"
t0=$(now); r "$W/repo-dir" restore latest --target "$W/raw/restored" -q; echo "by hand, restic restore of the volume directory: $(ms_since "$t0") ms"
