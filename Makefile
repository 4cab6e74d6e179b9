# ftkv — see README.md.
GO      ?= go
BIN     := bin
CMDS    := coord server client bench gateway
# Fixed ports for `make run` (README names them).
CLIENT_PORT  ?= 7000
SERVERS_PORT ?= 7001
CONFIG       ?= config.txt
FUZZTIME     ?= 60s
STATICCHECK  ?= v0.8.2

CHAOS_DURATION ?= 5m
SEED ?=

.PHONY: all build run test fuzz vet clean chaos bench-compare

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# Starts the default cluster in the foreground; ctrl+d or ctrl+c stops it
# (every server dumps server_<id>.primary/.secondary here first).
run: build
	./$(BIN)/coord -c $(CLIENT_PORT) -s $(SERVERS_PORT) -C $(CONFIG)

# Every test, with the race detector; the client's allocation check
# without it (the race detector makes sync.Pool drop objects); a short run
# of each fuzz target (counted in executions, not seconds: a busy machine
# must not fail it); the README sessions; the secure suites; the benchmark
# matrix's short form. (The end-to-end package under the race detector
# takes about 37 minutes of its 60 on the 2-CPU CI machine.)
test: build vet
	$(GO) test -race -count=1 -timeout 60m ./...
	FTKV_TEST_SYNC_SECONDARY=1 $(GO) test -count=1 ./server
	$(GO) test -count=1 -run '^TestHotPathAllocs$$' -bench '^BenchmarkSharedClient$$' -benchtime 2000x ./client
	$(MAKE) fuzz FUZZTIME=20000x
	scripts/readme-smoke.sh
	scripts/readme-remote.sh
	scripts/readme-group.sh
	scripts/readme-gateway.sh
	scripts/readme-metrics.sh
	scripts/readme-auth.sh
	scripts/readme-tls.sh
	scripts/test-secure.sh
	BENCH_DURATION=1s BENCH_REPS=1 scripts/bench-compare.sh --check

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	@if command -v staticcheck >/dev/null 2>&1; then echo "staticcheck ./..."; staticcheck ./...; \
	else echo "staticcheck not installed: skipped (.ci/run installs it: go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK))"; fi

# Longer fuzzing of every decoder (FUZZTIME=10m make fuzz for more).
fuzz:
	$(GO) test ./wire -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz '^FuzzDecodeView$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz '^FuzzDecodeHeartbeat$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/cli -run '^$$' -fuzz '^FuzzTokenize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bench/resp -run '^$$' -fuzz '^FuzzParseReply$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gateway -run '^$$' -fuzz '^FuzzReadCommand$$' -fuzztime $(FUZZTIME)

# Long randomized fault runs with a porcupine and ledger check at the end:
# one coordinator (server kill -9 and SIGSTOP, coordinator kill + restart),
# three coordinators (the same, plus leader and follower kill + restart,
# leader SIGSTOP, leader killed with a server), three coordinators on
# namespace hosts with servers over ssh (the same, plus the leader or a
# follower cut off from the other coordinators, the leader cut off while a
# server is killed; needs root), repeated crashes. Each prints its time to
# writable per kind of fault. CHAOS_DURATION=10m SEED=42 make chaos;
# CHAOS_RUN=TestChaosCoordGroupNetns runs one of them. `make test` runs the
# short forms of all but TestChaosCoordGroupNetns (~55s even for 20s of
# faults: only make chaos runs it).
CHAOS_RUN ?= ^(TestChaos|TestChaosCoordGroup|TestChaosCoordGroupNetns|TestRepeatedCrashes)$$
chaos: build
	FTKV_CHAOS_DURATION=$(CHAOS_DURATION) FTKV_CRASH_DURATION=$(CHAOS_DURATION) FTKV_SEED=$(SEED) \
		$(GO) test -race -count=1 -timeout 0 -v -run '$(CHAOS_RUN)' ./internal/e2e

# ftkv against Redis, side by side (method and targets: docs/BENCHMARKS.md): starts
# Redis (+ a replica) and a default cluster on free ports, runs the matrix
# and prints ftkv/Redis ratios. BENCH_DURATION=20s BENCH_REPS=5 make bench-compare
BENCH_DURATION ?= 10s
BENCH_REPS     ?= 3
bench-compare: build
	BENCH_DURATION=$(BENCH_DURATION) BENCH_REPS=$(BENCH_REPS) scripts/bench-compare.sh

clean:
	rm -rf $(BIN)
