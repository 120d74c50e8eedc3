"""CPU threads: a count the user gives wins; otherwise the CPUs that the load leaves idle, shared
among the processes; bad counts are one sentence and exit 1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import cli
from codec.devices import GLIBC_MALLOC_ENV, apply_threads, choose_threads, reuse_freed_memory
from codec.errors import CodecError
from codec.jobs import run_jobs

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "arctic_slt_a0009.flac"


@pytest.fixture
def machine(monkeypatch):
    """An 8-CPU machine whose 1-minute load the test sets (``machine(load)``), no CODEC_THREADS."""
    monkeypatch.delenv("CODEC_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)

    def set_load(load: float) -> None:
        monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))

    set_load(0.0)
    return set_load


def test_an_explicit_count_wins_over_the_environment_and_the_load(machine, monkeypatch):
    machine(7.0)
    monkeypatch.setenv("CODEC_THREADS", "3")
    assert choose_threads(2) == 2
    assert choose_threads(5, processes=4) == 5  # a count the user gives is per process
    assert choose_threads() == 3
    assert choose_threads(processes=4) == 3


def test_the_load_and_other_processes_reduce_the_count(machine):
    assert choose_threads() == 8
    machine(2.6)  # about 3 CPUs busy
    assert choose_threads() == 5
    machine(1.4)
    assert choose_threads(processes=2) == 3  # 7 idle CPUs, 2 processes
    assert choose_threads(processes=16) == 1
    machine(30.0)  # overloaded: one thread, never none
    assert choose_threads() == 1


def test_torchrun_ranks_on_one_machine_share_its_cpus(machine, monkeypatch):
    machine(1.4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads() == 3  # 7 idle CPUs, 2 ranks
    assert choose_threads(processes=1) == 7


def test_without_affinity_or_load_average_all_cpus_are_used(machine, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)

    def no_load():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", no_load)
    assert choose_threads() == 4


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "two"])
def test_a_bad_environment_count_is_one_sentence(machine, monkeypatch, value):
    monkeypatch.setenv("CODEC_THREADS", value)
    with pytest.raises(CodecError, match=rf"^CODEC_THREADS must be a whole number of threads, at least 1, "
                                         rf"got '{value}'\.$"):
        choose_threads()


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_a_bad_requested_count_is_one_sentence(value):
    with pytest.raises(CodecError, match=r"^--threads must be a whole number of threads, at least 1, got "):
        choose_threads(value)


def test_apply_threads_sets_torch_and_can_be_called_again(monkeypatch):
    monkeypatch.setenv("CODEC_THREADS", "1")
    before = torch.get_num_threads()
    try:
        assert apply_threads(2) == 2 and torch.get_num_threads() == 2
        assert apply_threads() == 1 and torch.get_num_threads() == 1  # inter-op threads are set once: no error
    finally:
        torch.set_num_threads(before)


_PAGE_FAULTS_OF_AN_ENCODE = """
import resource, sys, torch
from codec.audio.registry import load_tokenizer
from codec.audio.inference import prepare_for_inference
from codec.devices import reuse_freed_memory
torch.set_num_threads(1)
tuned = sys.argv[1] == "tuned" and reuse_freed_memory()
model = prepare_for_inference(load_tokenizer())
audio = torch.randn(1, 1, 160000, generator=torch.Generator().manual_seed(0)) * 0.1
with torch.inference_mode():
    first = model.encode(audio)
    model.encode(audio)  # the heap settles over two calls
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    later = [model.encode(audio) for _ in range(3)]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(tuned, faults, all(torch.equal(first, codes) for codes in later))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is for Linux")
def test_tuned_malloc_reuses_freed_activations_instead_of_faulting_them_in_again():
    env = {k: v for k, v in os.environ.items() if k not in GLIBC_MALLOC_ENV}
    results = {}
    for mode in ("plain", "tuned"):
        out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_OF_AN_ENCODE, mode], env=env, check=True,
                             capture_output=True, text=True, cwd=SAMPLE.parents[1]).stdout.split()
        results[mode] = out
    assert results["tuned"][0] == "True" and results["plain"][0] == "False"
    plain, tuned = int(results["plain"][1]), int(results["tuned"][1])
    assert plain > 3000  # three 10 s encodes free and re-fault megabytes of activations by default
    assert tuned < plain / 10
    assert results["plain"][2] == results["tuned"][2] == "True"


def test_malloc_is_left_alone_when_the_user_tunes_it(monkeypatch):
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert reuse_freed_memory() is False


def _record_threads(path: Path) -> None:  # a worker job of run_jobs
    path.write_text(f"{torch.get_num_threads()} {torch.get_num_interop_threads()}")


def test_worker_processes_take_the_chosen_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_THREADS", "1")  # spawned workers see the environment
    files = [tmp_path / f"{i}.txt" for i in range(2)]
    assert run_jobs([(f,) for f in files], _record_threads, workers=2) == []
    assert [f.read_text() for f in files] == ["1 1", "1 1"]


def test_the_cli_option_reaches_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_THREADS", "1")  # restored after the test
    result = CliRunner().invoke(cli.app, ["--threads", "2", "info", str(tmp_path / "missing.cdc")])
    assert result.exit_code == 1  # the file is missing; the option itself was accepted
    assert os.environ["CODEC_THREADS"] == "2"


@pytest.mark.parametrize("option", ["0", "-3"])
def test_a_bad_cli_option_is_one_error_line(tmp_path, monkeypatch, option):
    monkeypatch.setenv("CODEC_THREADS", "1")
    result = CliRunner().invoke(cli.app, ["--threads", option, "encode", str(SAMPLE), "-o", str(tmp_path / "a.cdc")])
    assert result.exit_code == 1
    assert result.stderr == f"error: --threads must be a whole number of threads, at least 1, got {option}.\n"
    assert "Traceback" not in result.output and not (tmp_path / "a.cdc").exists()
    assert os.environ["CODEC_THREADS"] == "1"


def test_a_bad_environment_count_stops_the_cli_with_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_THREADS", "many")
    result = CliRunner().invoke(cli.app, ["encode", str(SAMPLE), "-o", str(tmp_path / "a.cdc")])
    assert result.exit_code == 1
    assert result.stderr == "error: CODEC_THREADS must be a whole number of threads, at least 1, got 'many'.\n"
    assert "Traceback" not in result.output and not (tmp_path / "a.cdc").exists()
