#!/bin/sh
# Like the official image: a config-less redis-server listens to the container network.
set -e
if [ "$1" = "redis-server" ]; then
  shift
  set -- redis-server "$@" --protected-mode no
fi
exec "$@"
