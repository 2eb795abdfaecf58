#!/usr/bin/env bash
# bench/run.sh with the whole stack on loopback (LINK=nats): nats-server, redis-server,
# build/nhplatform and the gateway on the NATS link, all started for this run and stopped after.
#
#   bench/run-stack.sh hold --sessions 15000 --rate 1000 --hold 5s
#   bench/run-stack.sh fanout --sessions 10000 --fanout topic,scan
#
# Every environment knob of run.sh applies (NHGW_BIN, GW_WORKERS, GW_CPUS, BENCH_CPUS, ...), plus
# STACK_CPUS (pin nats-server, redis-server and the platform), PF_ARGS, NHPLATFORM_BIN.
exec env LINK=nats "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
