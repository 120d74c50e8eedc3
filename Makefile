# `make demo`: set up and run the main job; `make test`: set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchaudio==2.11.1
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: setup
	$(BIN)/codec encode samples/*.flac -o $(DEMO)/codes --bandwidth 6 --force
	$(BIN)/codec decode $(DEMO)/codes/*.cdc -o $(DEMO)/decoded --force
	$(BIN)/codec info $(DEMO)/codes/arctic_slt_a0009.cdc
	$(BIN)/codec eval --data samples --bandwidth 1.5 --bandwidth 3 --bandwidth 6 \
		--baseline opus:6,12 --baseline codec2:3200,1300 --out $(DEMO)/eval --force \
		--metric pesq_wb --metric stoi --metric mel_distance --metric speaker_sim --metric wer \
		--against "Opus 6 kbps"

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.suite

clean:
	rm -rf $(VENV) build
