#!/usr/bin/env bash
# Measures relay nodes (docs/performance.md): a redis-server and two release `hearth` nodes on
# loopback, and a hearth-load run through node A with node B as its fallback entry point.
#   MODE=kill  SIGKILL the room's owner AT seconds after the start (default)
#   MODE=drain SIGTERM it (drain: rooms and clients move to the other node)
#   MODE=none  no failure
# Other knobs: PUBS, SUBS, DUR (window seconds), AT. Needs `cargo build --release` and
# redis-server. Everything stays on 127.0.0.1; output goes to $OUT (default /tmp/hearth-cluster).
set -u
cd "$(dirname "$0")/.."
MODE=${MODE:-kill}
BIN=target/release
OUT=${OUT:-/tmp/hearth-cluster}
mkdir -p "$OUT"
REDIS_PORT=${REDIS_PORT:-6399}
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
RPID=$!
sleep 0.5
start() {
  HEARTH_SERVER__LISTEN=127.0.0.1:0 HEARTH_ROOMS__WAITING_ROOM=false HEARTH_STORE__PATH=$OUT/$1.db \
  HEARTH_CLUSTER__REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 HEARTH_CLUSTER__NODE_ID=$1 HEARTH_CLUSTER__DRAIN_GRACE_MS=0 \
  HEARTH_SERVER__WEB_ROOT=web-client \
  $BIN/hearth > $OUT/$1.out 2>$OUT/$1.log &
  echo $!
}
A=$(start node-a); B=$(start node-b)
sleep 1
AU=$(grep -o 'http://[0-9.:]*' $OUT/node-a.out | sed 's/http/ws/')/ws
BU=$(grep -o 'http://[0-9.:]*' $OUT/node-b.out | sed 's/http/ws/')/ws
echo "A=$AU B=$BU"
$BIN/hearth-load --url $AU --fallback-url $BU --publishers ${PUBS:-5} --subscribers ${SUBS:-5} --duration ${DUR:-20} --warmup 2 --json $OUT/report-$MODE.json > $OUT/load-$MODE.txt 2>$OUT/load-$MODE.err &
L=$!
sleep ${AT:-12}
ra=$(curl -s $(echo $AU | sed 's/ws:/http:/; s#/ws$#/healthz#') | grep -o '"rooms":[0-9]*' | cut -d: -f2)
if [ "$ra" = "1" ]; then OWNER=$A; ON=a; else OWNER=$B; ON=b; fi
echo "owner node-$ON pid $OWNER"
case $MODE in
  kill) kill -9 $OWNER; date +%s.%N > $OUT/killed-at;;
  drain) kill -TERM $OWNER;;
esac
wait $L
cat $OUT/load-$MODE.txt
kill $A $B $RPID 2>/dev/null; wait 2>/dev/null
rm -f "$OUT"/node-a.db* "$OUT"/node-b.db*
