"""The Ray Data baseline of section 10 of `make bench`.

The same text files as `strata run` reads, through whatlang (the `pywhatlang`
binding) with Ray Data's `map_batches` on as many CPUs as the process may
use, JSON lines out. Section 10 times the whole process from outside, Ray's
start-up and shut-down included, as it times `strata run`; the script also
prints its own wall time.

    python ray_data.py <directory of .txt files> <output directory>

It runs only when STRATA_BENCH_RAY_PYTHON names a Python that has `ray[data]`
and `pywhatlang`; `make bench` does not install them.
"""

import os
import sys
import time

started = time.perf_counter()

import ray  # noqa: E402
import pywhatlang  # noqa: E402


def detect(batch):
    """The language, confidence and reliability of each file's text."""
    languages, confidences, reliables = [], [], []
    for content in batch["bytes"]:
        text = content.decode("utf-8", "replace")
        try:
            language, confidence, reliable = pywhatlang.detect_lang(text)
        except Exception:  # no language found
            language, confidence, reliable = None, 0.0, False
        languages.append(language)
        confidences.append(confidence)
        reliables.append(reliable)
    return {
        "path": batch["path"],
        "language": languages,
        "confidence": confidences,
        "reliable": reliables,
    }


def main():
    source, target = sys.argv[1], sys.argv[2]
    ray.init(
        num_cpus=len(os.sched_getaffinity(0)),
        include_dashboard=False,
        log_to_driver=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    (
        ray.data.read_binary_files(source, include_paths=True)
        .map_batches(detect, batch_size=256)
        .write_json(target)
    )
    ray.shutdown()
    print(f"{time.perf_counter() - started:.3f}")


if __name__ == "__main__":
    main()
