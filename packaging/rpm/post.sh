# Subordinate ids for rootless podman, the token file and state directory
# (tmpfiles.d), and the preset, as %systemd_post does: never started here,
# since the node needs repo_url first.
/usr/libexec/dgrid-worker/setup-subids dgrid-worker
systemd-tmpfiles --create dgrid-worker.conf >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
  systemctl --no-reload preset dgrid-worker.service >/dev/null 2>&1 || :
fi
