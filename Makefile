# danmaku — build, run and test.
#
#   make build      bin/danmaku
#   make run        everything in one process on embedded backends (go run . all)
#   make test       lint, a short pass of every fuzz target, then every Go test
#                   with -race against real Redis, ClickHouse and a
#                   Kafka-protocol broker that it installs (apt) and starts on
#                   loopback; it always stops the servers it started.
#                   TESTENV=DIR keeps their files in DIR (default: a fresh temp
#                   dir, removed after a green run).
#   make test-unit  go test -race ./... with no servers (backend tests skip)
#   make fuzz       every fuzz target for FUZZTIME (default 60s) each
#   make chaos      the long fault and attack suite (a few minutes): every
#                   fault of TestChaos three times with 400 viewers, 10k
#                   slowloris handshakes against a gateway subprocess, slow
#                   consumers until all are cut off, and a random fault
#                   schedule checked by bench/checker (TestFaultSchedule;
#                   SEED=N repeats one, DURATION=3m sets its length; see
#                   docs/reliability.md); starts and stops its servers like
#                   make test
#   make lint       gofmt, go vet, staticcheck (checks in staticcheck.conf;
#                   installed once, pinned, into ~/.cache/danmaku-tools) and
#                   no fmt.Print outside package main and tests
#   make bench      the default load run (fanout: 5000 viewers, 100 msg/s,
#                   30 s on one embedded danmaku all; under 2 minutes);
#                   bench-idle, bench-fanout, bench-rooms, bench-storm,
#                   bench-send, bench-soak run one scenario each;
#                   bench-latency, bench-throughput, bench-storm-100k and
#                   bench-1m the performance table's rows (BENCHMARKS.md);
#                   bench-ladder and bench-mixed issue 15's overload runs
#                   (BENCHFLAGS adds flags; results in bench-results/);
#                   bench-model prints the scale model's table
#                   (docs/scaling.md; MODEL_PRESETS names the columns);
#                   bench-micro runs the micro benchmarks (frame codec,
#                   deflate, keyword moderation) and the gateway's live heap
#                   per idle viewer; bench-analytics times the stream
#                   analytics queries over 10 million rows in ClickHouse
#                   (DANMAKU_TEST_CLICKHOUSE; loads the rows once)
#   make clean      remove build output

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# Go may be installed but not on PATH (a fresh machine has it only in
# /usr/local/go/bin).
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := $(PATH):/usr/local/go/bin
endif
# The race detector needs cgo, hence gcc: `deps` installs it when missing.
RACE := CGO_ENABLED=1 go test -race

# TESTENV is the directory for the test servers' files; empty means a new
# temp dir per run.
TESTENV ?=
# FUZZTIME is how long `make fuzz` runs each target; FUZZSMOKE is the same
# for the short pass inside `make test`.
FUZZTIME ?= 60s
FUZZSMOKE ?= 5s

.PHONY: build run deps test test-unit chaos fuzz fuzz-smoke lint bench bench-idle bench-fanout bench-rooms bench-storm bench-send bench-soak bench-latency bench-throughput bench-storm-100k bench-1m bench-ladder bench-mixed bench-model bench-model-fit bench-micro bench-analytics clean

build:
	go build -o bin/danmaku .

run:
	go run . all

deps:
	deploy/dev/env.sh deps

# STATICCHECK is honnef.co/go/tools at a pinned version, built from the Go
# module proxy into a cache directory the first time lint needs it.
STATICCHECK_VERSION := v0.8.2
TOOLSDIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/danmaku-tools
STATICCHECK := $(TOOLSDIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck

$(STATICCHECK):
	GOBIN=$(dir $@) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK)
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path '*/node_modules/*' -not -path './third_party/*'); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "gofmt needed on:"; echo "$$bad"; exit 1; fi; \
	bad=$$(for f in $$files; do case $$f in *_test.go) continue;; esac; \
		grep -q '^package main$$' $$f || grep -Hn 'fmt\.Print' $$f || true; done); \
	if [ -n "$$bad" ]; then echo "fmt.Print outside package main (log through slog or write to an io.Writer):"; echo "$$bad"; exit 1; fi
	go vet ./...
	$(STATICCHECK) ./...

test: deps lint
	@rc=1; made=; dir='$(TESTENV)'; \
	if [ -z "$$dir" ]; then dir=$$(mktemp -d "$${TMPDIR:-/tmp}/danmaku-test.XXXXXX"); made=1; fi; \
	trap 'deploy/dev/env.sh down "$$dir"; if [ -n "$$made" ] && [ "$$rc" -eq 0 ]; then rm -rf "$$dir"; fi' EXIT; \
	trap 'exit 130' INT TERM; \
	smoke=0; deploy/dev/fuzz.sh $(FUZZSMOKE) || smoke=1; \
	deploy/dev/env.sh up "$$dir"; \
	. "$$dir/env"; \
	rc=0; $(RACE) -count=1 -timeout 15m ./... || rc=$$?; \
	if [ "$$smoke" -ne 0 ]; then echo "fuzz smoke pass failed (see above)"; [ "$$rc" -ne 0 ] || rc=1; fi; \
	if [ "$$rc" -ne 0 ]; then echo "make test: failed (exit $$rc); server files kept in $$dir"; fi; \
	exit $$rc

test-unit: deps
	$(RACE) -count=1 ./...

# chaos runs the fault, flood and overload tests in their long form
# (DANMAKU_CHAOS=long) against servers of its own, without the race
# detector so the timings mean something. SEED and DURATION choose the
# fault schedule of TestFaultSchedule (default: a random seed, 3m).
CHAOSTESTS := TestChaos|TestMultiProcess|TestFloodsKeepViewerLatency|TestOverload|TestSecurity|TestSecretsNotLogged|TestClickHouseDown|TestRedisDown|TestFaultSchedule
SEED ?=
DURATION ?=

chaos: deps
	@rc=1; made=; dir='$(TESTENV)'; \
	if [ -z "$$dir" ]; then dir=$$(mktemp -d "$${TMPDIR:-/tmp}/danmaku-chaos.XXXXXX"); made=1; fi; \
	trap 'deploy/dev/env.sh down "$$dir"; if [ -n "$$made" ] && [ "$$rc" -eq 0 ]; then rm -rf "$$dir"; fi' EXIT; \
	trap 'exit 130' INT TERM; \
	deploy/dev/env.sh up "$$dir"; \
	. "$$dir/env"; \
	rc=0; DANMAKU_CHAOS=long DANMAKU_SEED='$(SEED)' DANMAKU_DURATION='$(DURATION)' CI=true \
		go test -count=1 -timeout 40m -v -run '^($(CHAOSTESTS))' . || rc=$$?; \
	if [ "$$rc" -ne 0 ]; then echo "make chaos: failed (exit $$rc); server files kept in $$dir"; fi; \
	exit $$rc

fuzz:
	deploy/dev/fuzz.sh $(FUZZTIME)

fuzz-smoke:
	deploy/dev/fuzz.sh $(FUZZSMOKE)

# bench runs the load generator (the `bench` subcommand of the danmaku
# binary); results go to BENCHMARKS.md with the command that produced them.
# The binary is built first: the harness re-executes itself for its worker
# processes and servers. See docs/bench.md.
BENCHFLAGS ?=
BENCHBIN := bin/danmaku

bench: build
	$(BENCHBIN) bench fanout --viewers 5000 --rate 100 --duration 30s --name make-bench $(BENCHFLAGS)

bench-idle: build
	$(BENCHBIN) bench idle --viewers 19000 --duration 10s $(BENCHFLAGS)

bench-fanout: build
	$(BENCHBIN) bench fanout --viewers 19000 --rate 100 --duration 30s $(BENCHFLAGS)

bench-rooms: build
	$(BENCHBIN) bench rooms --viewers 20000 --rooms 200 --rate 500 --duration 30s $(BENCHFLAGS)

bench-storm: build
	$(BENCHBIN) bench storm --viewers 19000 --rate 50 --duration 45s --drop-at 10s $(BENCHFLAGS)

bench-send: build
	$(BENCHBIN) bench send --viewers 1000 --senders 1000 --send-rate 2 --keywords 10000 --bad-ratio 0.1 --duration 30s $(BENCHFLAGS)

bench-soak: build
	$(BENCHBIN) bench soak --viewers 10000 --rooms 50 --rate 200 --duration 10m --report-every 1m $(BENCHFLAGS)

# WITH_BROKER starts the dev Kafka-protocol broker for the command after it
# (with DANMAKU_BROKERS set) and stops it at the end; WITH_SERVERS does the
# same with Redis, ClickHouse and the broker (deploy/dev/env.sh, which
# installs what is missing), exporting their DANMAKU_TEST_* addresses. Both
# first give the host a gateway host's TCP memory (deploy/dev/tcpmem.sh):
# on loopback the viewers' backlogs are charged to it too.
WITH_BROKER = deploy/dev/tcpmem.sh && dir=$$(mktemp -d) && deploy/dev/kafka.sh start $$dir && trap 'deploy/dev/kafka.sh stop '$$dir EXIT && \
	DANMAKU_BROKERS=$$(cat $$dir/kafka.addr)
WITH_SERVERS = deploy/dev/tcpmem.sh && dir=$$(mktemp -d) && deploy/dev/env.sh up $$dir && trap 'deploy/dev/env.sh down '$$dir EXIT && \
	. $$dir/env && DANMAKU_BROKERS=$$DANMAKU_TEST_KAFKA

# The scenarios of BENCHMARKS.md's "Where each target stands" table, one
# target each, as measured there (bench-idle and bench-micro cover memory
# per idle viewer and moderation):
#   bench-latency     send → viewer p99 and handshakes/s: 19,000 viewers of
#                     one room on one gateway process (Kafka bus), 100 msg/s
#   bench-throughput  deliveries per gateway CPU-second: the same at 1000 msg/s
#   bench-storm-100k  100,000 viewers on 6 gateways resume after all six
#                     restart (ClickHouse history), about 2 minutes
bench-latency: build
	@$(WITH_BROKER) $(BENCHBIN) bench fanout --gateways 1 --viewers 19000 --rate 100 --duration 20s --grace 10s \
		--name bench-latency $(BENCHFLAGS)

bench-throughput: build
	@$(WITH_BROKER) $(BENCHBIN) bench fanout --gateways 1 --viewers 19000 --rate 1000 --duration 15s --grace 10s \
		--name bench-throughput $(BENCHFLAGS)

bench-storm-100k: build
	@$(WITH_SERVERS) $(BENCHBIN) bench storm --restart --gateways 6 --viewers 100000 --concurrency 1000 --rate 1 \
		--duration 60s --drop-at 10s --grace 20s --connect-timeout 120s \
		--server-args "--history clickhouse --clickhouse $$DANMAKU_TEST_CLICKHOUSE" --name bench-storm-100k $(BENCHFLAGS)

# bench-1m: a million viewers on this machine (52 gateway processes on the
# Kafka bus, 56 workers, heartbeats running; about 11 minutes). It starts
# the dev broker and stops it at the end. Each gateway gets its share of
# the online-frame budget (--online-rate 100). The gateways share one port
# (SO_REUSEPORT; --reuseport=false gives each its own). A handshake may
# take 30 s: with 10 s the starved workers gave up on ~250k handshakes the
# gateways had answered. See BENCHMARKS.md.
bench-1m: build
	@$(WITH_BROKER) GOMAXPROCS=1 $(BENCHBIN) bench idle --gateways 52 --viewers 1000000 \
		--concurrency 200 --connect-rate 50 --read-pause 5ms --duration 60s --warmup 3s --connect-timeout 540s \
		--handshake-timeout 30s --server-args "--online-rate 100" --name bench-1m $(BENCHFLAGS)


# bench-mixed: issue 15's mixed scenario. 100,000 viewers over 1,000 rooms
# (Zipf 1.1) on 6 gateways and the dev broker, chat-corpus messages from
# two sources at once: the publish API over HTTP (MIXED_HTTP msg/s) and
# MIXED_SENDERS viewers sending over WebSocket at MIXED_SEND_RATE each
# (moderation on: viewers' rate limits apply). The defaults offer about
# 400 msg/s (200 + 1000 x 0.2); 2,000 msg/s: MIXED_HTTP=1000
# MIXED_SENDERS=2000 MIXED_SEND_RATE=0.5. Results:
# bench-results/bench-mixed-<http>-<senders>.json. About a minute per run.
MIXED_HTTP ?= 200
MIXED_SENDERS ?= 1000
MIXED_SEND_RATE ?= 0.2
bench-mixed: build
	@$(WITH_BROKER) $(BENCHBIN) bench rooms --gateways 6 --viewers 100000 --rooms 1000 --zipf 1.1 \
		--rate $(MIXED_HTTP) --senders $(MIXED_SENDERS) --send-rate $(MIXED_SEND_RATE) --corpus chat \
		--duration 20s --grace 10s --concurrency 1000 --connect-timeout 120s \
		--name bench-mixed-$(MIXED_HTTP)-$(MIXED_SENDERS) $(BENCHFLAGS)

# bench-ladder: issue 15's one-room overload ladder. One `danmaku all`
# (in-memory backends) pinned to core 0, the harness (viewers that read and
# never resume) pinned to core 1; 19,000 viewers of one room; chat-corpus
# messages published over HTTP as viewers' chat (sheddable) at 100, 200,
# 500 and 1000 msg/s, then 100 again (shedding must have ended), each run
# short; LADDER_DEFLATE=1 makes the viewers negotiate permessage-deflate.
# The gateway runs LADDER_LOOPS (2) event loops on its one core
# (GOMAXPROCS would give it one): a wide room's loop waits after each
# pass, and a second loop writes meanwhile (BENCHMARKS.md).
# Results: bench-results/ladder[-deflate]-<rate>[-again].json. Needs 2 cores
# and an open-file limit above 19,700.
LADDER_RATES ?= 100 200 500 1000
LADDER_DURATION ?= 15s
LADDER_DEFLATE ?=
LADDER_LOOPS ?= 2
LADDER_SERVER_FLAGS ?=
bench-ladder: build
	@set -e; deploy/dev/tcpmem.sh; mkdir -p bench-results; secret=ladder-$$$$-$$(date +%s); tag=ladder$(if $(LADDER_DEFLATE),-deflate,); \
	taskset -c 0 $(BENCHBIN) all --demo=false --guests=false --max-conns-per-ip -1 \
		--http 127.0.0.1:18480 --ws 127.0.0.1:18490 --jwt-secret $$secret --loops $(LADDER_LOOPS) $(LADDER_SERVER_FLAGS) >bench-results/$$tag-server.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; sleep 2; \
	for run in $(LADDER_RATES) again; do rate=$$run; name=$$tag-$$run; \
		if [ $$run = again ]; then rate=100; name=$$tag-100-again; fi; \
		GOMAXPROCS=1 taskset -c 1 $(BENCHBIN) bench fanout --viewers 19000 --rate $$rate --duration $(LADDER_DURATION) \
			--grace 10s --ws 127.0.0.1:18490 --http 127.0.0.1:18480 --jwt-secret $$secret --gateway-pids $$pid \
			--as-viewers --corpus chat $(if $(LADDER_DEFLATE),--deflate,) --quiet --name $$name $(BENCHFLAGS); \
		curl -s http://127.0.0.1:18480/metrics | grep -E '^danmaku_gateway_(shed|slow_consumer|dropped|closes)' \
			>bench-results/$$name-metrics.txt || true; \
	done
# bench-model: the scale model (bench/model, docs/scaling.md) for the
# platform presets, from the unit costs in bench/model/costs.json
# (`bin/danmaku bench model --costs-list` prints them with the command
# that measures each); the box-latency, box-throughput and box-mixed
# presets predict this machine's runs (BENCHFLAGS="--box-load L").
MODEL_PRESETS ?= 1m,10m,10m-affinity,50m,50m-affinity,50m-by-partition
bench-model: build
	$(BENCHBIN) bench model --preset $(MODEL_PRESETS) $(BENCHFLAGS)

# bench-model-fit: this machine's unit costs for the model. Six runs of
# one room on one gateway and the dev broker (200 to 19,000 viewers, 100
# to 1,000 msg/s, 15 s apart; about 5 minutes), then a least-squares fit
# of the gateways', the harness's, logic's and dispatch's CPU to what they
# did (bench model --fit) into bench-results/costs-fit.json; check the
# model with bench model --costs bench-results/costs-fit.json --against
# RESULT.json. FIT_TAG names the runs (cal200-$(FIT_TAG), ...).
FIT_TAG ?= fit
bench-model-fit: build
	@set -e; for spec in "cal200 --viewers 200" "cal2000 --viewers 2000" "cal5000-400 --viewers 5000 --rate 400" \
		"bench-latency" "fan19k-300 --rate 300 --duration 15s" "bench-throughput --rate 1000 --duration 15s"; do \
		set -- $$spec; name=$$1-$(FIT_TAG); shift; sleep 15; \
		$(MAKE) -s bench-latency BENCHFLAGS="$$* --name $$name"; files=$${files:+$$files,}bench-results/$$name.json; \
	done; \
	$(BENCHBIN) bench model --fit $$files --fit-out bench-results/costs-fit.json

bench-micro:
	go test -run '^$$' -bench 'Deflate|Frame|Check10kKeywords' -benchtime 2s ./pkg/ws/ ./moderation/
	DANMAKU_MEMTEST=8000 go test -count=1 -run 'MemoryPerIdleViewer' -v ./gateway/

# bench-analytics needs DANMAKU_TEST_CLICKHOUSE (source the test env); the
# 10M rows stay in database danmaku_bench_analytics for the next run.
bench-analytics:
	uptime
	go test -run '^$$' -bench 'Analytics' -benchtime 3x -timeout 60m ./pkg/history/chstore/
	uptime

clean:
	rm -rf bin
