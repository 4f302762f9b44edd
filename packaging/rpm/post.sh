# Subordinate ids for rootless podman, the token file and state directory
# (tmpfiles.d), the node key, and the preset, as %systemd_post does: never started here,
# since the node needs repo_url first.
/usr/libexec/dgrid-worker/setup-subids dgrid-worker
systemd-tmpfiles --create dgrid-worker.conf >/dev/null 2>&1 || :
# The node's own key (signs its results): made once, kept on upgrade and
# on erase, as the token is.
if [ ! -e /etc/dgrid/node-key ]; then
  rm -f /etc/dgrid/node-key.pub
  /usr/bin/dgrid-worker keygen -f /etc/dgrid/node-key >/dev/null
fi
if [ "$1" -eq 1 ]; then
  systemctl --no-reload preset dgrid-worker.service >/dev/null 2>&1 || :
fi
