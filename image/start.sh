#!/bin/sh
# Drop-in for the start.sh step of an ExApp image (contract §5.2), shipped in the
# harp-exapp-layer image at /harp/start.sh next to /harp/harp:
#
#   COPY --from=harp-exapp-layer /harp /harp
#   ENTRYPOINT ["/harp/start.sh"]
#   CMD ["python3", "main.py"]          # the app itself
#
# With HP_SHARED_KEY set (AppAPI sets it for a HaRP daemon without exapp_direct), start the
# FRP tunnel to harp, configured from the environment AppAPI passes, and then run the app,
# which listens on /tmp/exapp.sock; without it, run the app directly.
set -e
if [ -n "${HP_SHARED_KEY:-}" ]; then
    /harp/harp tunnel --from-env &
fi
exec "$@"
