"""Many files in, many files out: output names that never collide, and work over several processes.

``plan_outputs`` maps inputs to outputs before any work starts, refusing every plan in which two
inputs would write the same file; ``run_jobs`` runs one picklable function per job (e.g. an
(input, output) pair), in this process or in ``workers`` spawned processes that share the free
CPUs (``devices.choose_threads``), and collects each job's error sentence. A file's result does
not depend on which process coded it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .devices import apply_threads
from .errors import CodecError

Job = tuple  # the arguments of one call of the work function, e.g. (input, output)


def plan_outputs(inputs: list[Path], output: str | None, suffix: str) -> list[Path]:
    """Output paths: next to each input (``output`` None), the file ``output`` for one input, or
    inside the folder ``output``; CodecError if two inputs would write the same output."""
    if output is not None and not output.strip():
        raise CodecError("-o/--output needs a file or folder name, got an empty string.")
    if output is None:
        outputs = [p.with_suffix(suffix) for p in inputs]
    else:
        target = Path(output).expanduser()
        if len(inputs) == 1 and not target.is_dir():
            return [target]
        if target.exists() and not target.is_dir():
            raise CodecError(f"With several inputs, -o must be a folder, and {target} is a file.")
        if not target.exists() and target.suffix:
            raise CodecError(f"With several inputs, -o must be a folder, and {target} looks like a file name; "
                             "create the folder first to use such a name.")
        outputs = [target / p.with_suffix(suffix).name for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        key = dst.resolve()
        if key in seen:
            raise CodecError(f"{seen[key]} and {src} would both be written to {dst}; code them into different "
                             "folders or rename one.")
        seen[key] = src
    if output is not None:
        Path(output).expanduser().mkdir(parents=True, exist_ok=True)  # only for a plan that holds
    return outputs


def run_jobs(jobs: list[Job], work: Callable[..., None], workers: int = 1,
             advance: Callable[[], None] = lambda: None) -> list[tuple[Job, str]]:
    """Run ``work(*job)`` for every job, ``workers`` at a time in spawned processes (``work`` must
    then be picklable: a module-level function or a partial of one); returns the (job, error
    sentence) of every job that raised CodecError, in job order."""
    failures: dict[int, str] = {}
    if workers <= 1 or len(jobs) < 2:
        for i, job in enumerate(jobs):
            try:
                work(*job)
            except CodecError as e:
                failures[i] = str(e)
            advance()
    else:
        processes = min(workers, len(jobs))
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
        with ProcessPoolExecutor(processes, mp_context=context, initializer=apply_threads,
                                 initargs=(None, processes)) as pool:  # the free CPUs shared among the workers
            futures = {pool.submit(work, *job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                try:
                    future.result()
                except CodecError as e:
                    failures[futures[future]] = str(e)
                advance()
    return [(jobs[i], failures[i]) for i in sorted(failures)]
