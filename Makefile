# ftkv — see README.md.
GO      ?= go
BIN     := bin
CMDS    := coord server client bench
# Fixed ports for `make run` (README names them).
CLIENT_PORT  ?= 7000
SERVERS_PORT ?= 7001
CONFIG       ?= config.txt
FUZZTIME     ?= 60s

.PHONY: all build run test test-short fuzz vet clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# Starts the default cluster in the foreground; ctrl+d or ctrl+c stops it
# (every server dumps server_<id>.primary/.secondary here first).
run: build
	./$(BIN)/coord -c $(CLIENT_PORT) -s $(SERVERS_PORT) -C $(CONFIG)

# Every test, with the race detector, plus a short run of each fuzz target.
test: build vet
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=5s
	scripts/readme-smoke.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || (echo "gofmt needed:"; gofmt -l .; exit 1)

# Longer fuzzing of every decoder (FUZZTIME=10m make fuzz for more).
fuzz:
	$(GO) test ./wire -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz '^FuzzDecodeView$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz '^FuzzDecodeHeartbeat$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/cli -run '^$$' -fuzz '^FuzzTokenize$$' -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN)
