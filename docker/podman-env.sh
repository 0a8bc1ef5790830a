# Source this file to use podman for the project's images and for `dec-pipeline run --runner
# docker`:
#
#   source docker/podman-env.sh          settings only (CONTAINERS_CONF)
#   source docker/podman-env.sh service  also start podman's Docker-compatible API and export
#                                        DOCKER_HOST, which the Docker SDK (and so kfp.local's
#                                        DockerRunner) reads
#
# The settings live here, not in /etc, so a fresh machine or CI gets them from the project:
# - runtime runc: crun refuses a hybrid cgroup v1/v2 layout, which some hosts have;
# - cgroup_manager cgroupfs: there is no systemd to ask in a container or a CI sandbox;
# - default_ulimits no higher than this shell's hard limits: podman otherwise asks for more open
#   files than an unprivileged (or nested) root may have, and every container fails to start.
# shellcheck shell=bash

_dec_podman_dir=${DEC_PODMAN_DIR:-${XDG_RUNTIME_DIR:-/tmp}/dec-podman-$(id -u)}
mkdir -p "$_dec_podman_dir"
_dec_nofile=$(ulimit -Hn)
[ "$_dec_nofile" = unlimited ] && _dec_nofile=1048576
_dec_nproc=$(ulimit -Hu)
{ [ "$_dec_nproc" = unlimited ] || [ "$_dec_nproc" -gt 32768 ]; } && _dec_nproc=32768
cat > "$_dec_podman_dir/containers.conf" <<EOF
# Written by docker/podman-env.sh; edit that file, not this one.
[containers]
default_ulimits = ["nofile=$_dec_nofile:$_dec_nofile", "nproc=$_dec_nproc:$_dec_nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$_dec_podman_dir/containers.conf"

if [ "${1:-}" = service ]; then
  _dec_socket="$_dec_podman_dir/podman.sock"
  if ! curl -sf --unix-socket "$_dec_socket" http://d/_ping >/dev/null 2>&1; then
    rm -f "$_dec_socket"
    # --time=0: the service lives until killed; it runs as long as the shell that started it.
    nohup podman system service --time=0 "unix://$_dec_socket" \
      >"$_dec_podman_dir/service.log" 2>&1 &
    for _ in $(seq 50); do
      curl -sf --unix-socket "$_dec_socket" http://d/_ping >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -sf --unix-socket "$_dec_socket" http://d/_ping >/dev/null 2>&1 || {
      echo "podman-env: the API service did not start; see $_dec_podman_dir/service.log" >&2
      return 1 2>/dev/null || exit 1; }
  fi
  export DOCKER_HOST="unix://$_dec_socket"
fi
unset _dec_podman_dir _dec_nofile _dec_nproc _dec_socket
