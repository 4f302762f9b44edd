# As %systemd_preun: on erase (not upgrade), stop and disable. Stopping
# drains the running task first.
if [ "$1" -eq 0 ]; then
  systemctl --no-reload disable --now dgrid-worker.service >/dev/null 2>&1 || :
fi
