"""Write a synthetic dataset: Parquet parts cut from the model's blocks, staged, then published in one step."""

from __future__ import annotations

import logging
import math
import multiprocessing
import shlex
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from kon_ray import storage
from kon_ray.config import CONF_DIR, dataset_choices
from kon_ray.synth.config import SynthConfig
from kon_ray.synth.model import BLOCK_ROWS, NULL_DATE, Calendar, bind, categories, generate_block
from kon_ray.synth.schema import ARROW_TYPES, SynthDataset

if TYPE_CHECKING:
    from kon_ray.config import DatasetConfig

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"  # written after the parts; a leading "_" keeps Parquet readers away from it


@dataclass(frozen=True)
class Part:
    """One output file: rows [start, stop) of the dataset."""

    index: int
    start: int
    stop: int
    name: str


def plan(rows: int, rows_per_file: int) -> List[Part]:
    count = math.ceil(rows / rows_per_file)
    width = max(5, len(str(count - 1)))
    return [
        Part(i, i * rows_per_file, min(rows, (i + 1) * rows_per_file), f"part-{i:0{width}d}.parquet")
        for i in range(count)
    ]


def rows_table(data: SynthDataset, calendar: Calendar, drift: float, seed: int, start: int, stop: int) -> pa.Table:
    """Rows [start, stop) as an Arrow table in the declared column order, whatever blocks they straddle."""
    first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
    blocks = [generate_block(data, calendar, drift, seed, b) for b in range(first, last + 1)]
    lo, hi = start - first * BLOCK_ROWS, stop - first * BLOCK_ROWS
    cats = categories(data.spec)
    arrays = []
    for name, kind in data.columns:
        values = np.concatenate([block[name] for block in blocks])[lo:hi]
        arrays.append(_to_arrow(values, kind, cats.get(name)))
    return pa.Table.from_arrays(arrays, schema=data.arrow_schema())


def _to_arrow(values: np.ndarray, kind: str, cats: Optional[Tuple[str, ...]]) -> pa.Array:
    if kind == "float64":
        return pa.array(values.astype(np.float64), pa.float64(), from_pandas=True)  # NaN -> null
    if kind == "date":
        days = values.view(np.int64)  # datetime64[D] -> days since 1970-01-01; NaT is NULL_DATE
        missing = days == NULL_DATE
        return pa.array(np.where(missing, 0, days).astype(np.int32), pa.date32(), mask=missing)
    if kind == "string":
        assert cats is not None
        codes = values.astype(np.int32)
        indices = pa.array(codes, pa.int32(), mask=codes < 0)
        return pa.DictionaryArray.from_arrays(indices, pa.array(cats, pa.string())).cast(pa.string())
    return pa.array(values, ARROW_TYPES[kind])


def iter_tables(
    dataset: "DatasetConfig", synth: SynthConfig, rows: Optional[int] = None
) -> Iterator[Tuple[Part, pa.Table]]:
    """The dataset's parts in order, without writing them (tests read a sample this way)."""
    data = bind(dataset)
    calendar = Calendar.ending(synth.end_month, synth.months)
    total = rows or synth.rows or dataset.sample_rows
    for part in plan(total, synth.rows_per_file):
        yield part, rows_table(data, calendar, synth.drift, synth.seed, part.start, part.stop)


def _write_part(args: Tuple[SynthDataset, str, int, float, int, str, int, int]) -> Tuple[int, float, float]:
    """Generate one part and write it; runs inline or in a worker process. Returns (rows, seconds, CPU seconds)."""
    data, end_month, months, drift, seed, path, start, stop = args
    began, cpu = time.perf_counter(), time.process_time()
    table = rows_table(data, Calendar.ending(end_month, months), drift, seed, start, stop)
    fs, fs_path = storage.filesystem(path)
    pq.write_table(table, fs_path, filesystem=fs, compression="zstd")
    return table.num_rows, time.perf_counter() - began, time.process_time() - cpu


def generate(dataset: "DatasetConfig", synth: SynthConfig, output: Optional[str] = None) -> Dict[str, object]:
    """Write the synthetic `dataset` to `output` (default synth.output, then dataset.path), all or nothing.

    Returns the summary: dataset, rows, files, path, seconds, rows_per_s.
    """
    data = bind(dataset)  # the YAML's columns and cut points with the generator's knobs; a mismatch fails here
    rows = synth.rows or dataset.sample_rows
    target = output or synth.output or dataset.path
    parts = plan(rows, synth.rows_per_file)
    staged = storage.staging_dir(target)
    fs, staged_path = storage.filesystem(staged)
    if not storage.is_s3(staged):  # S3 has no folders; a marker object would outlive the staging prefix
        fs.create_dir(staged_path, recursive=True)
    settings = (data, synth.end_month, synth.months, synth.drift, synth.seed)
    jobs = [(*settings, storage.join(staged, p.name), p.start, p.stop) for p in parts]
    workers = min(synth.workers, len(parts))
    log.info(
        "generating %s: %d rows in %d part(s) of <= %d rows, %d process(es), seed %d, drift %g -> %s",
        data.name, rows, len(parts), synth.rows_per_file, workers, synth.seed, synth.drift, target,
    )
    began = time.perf_counter()
    done = 0
    try:
        if workers > 1:
            context = multiprocessing.get_context("spawn")  # fork after pyarrow's threads start is unsafe
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                for part, (count, seconds, cpu) in zip(parts, pool.map(_write_part, jobs)):
                    done += count
                    _progress(data.name, part, count, seconds, cpu, done, rows, began)
        else:
            for part, job in zip(parts, jobs):
                count, seconds, cpu = _write_part(job)
                done += count
                _progress(data.name, part, count, seconds, cpu, done, rows, began)
        storage.publish(staged, target)
    except BaseException:
        storage.remove(staged)  # a failed or interrupted run leaves nothing behind, not even the staging folder
        raise
    seconds = time.perf_counter() - began
    summary: Dict[str, object] = {
        "dataset": data.name,
        "rows": rows,
        "files": len(parts),
        "path": target,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds > 0 else None,
    }
    calendar = Calendar.ending(synth.end_month, synth.months)
    storage.write_json(
        storage.join(target, MANIFEST),
        {
            **summary,
            "seed": synth.seed,
            "drift": synth.drift,
            "months": synth.months,
            "end_month": synth.end_month,
            "drift_window_start": str(np.datetime64(calendar.drift_start_day, "D")),
            "rows_per_file": synth.rows_per_file,
            "block_rows": BLOCK_ROWS,
            "parts": [p.name for p in parts],
        },
    )
    log.info("%s: %d rows in %.1f s (%s rows/s) -> %s", data.name, rows, seconds, summary["rows_per_s"], target)
    return summary


def _progress(
    name: str, part: Part, count: int, seconds: float, cpu: float, done: int, rows: int, began: float
) -> None:
    # CPU seconds beside wall seconds: on a shared machine the wall rate says more about the neighbours
    elapsed = time.perf_counter() - began
    log.info(
        "%s %s: %d rows in %.2f s, %.2f CPU s (%.0f rows/s); %d/%d rows, %.0f rows/s overall",
        name, part.name, count, seconds, cpu, count / max(seconds, 1e-9), done, rows, done / max(elapsed, 1e-9),
    )


def ensure_sample(dataset: "DatasetConfig", synth: Optional["SynthConfig"] = None) -> Optional[Dict[str, Any]]:
    """Generate the dataset's embedded default sample at dataset.path unless Parquet data is already there.

    Returns the generator's summary, or None when the data was already there (it is never overwritten).
    """
    if storage.list_files(dataset.path):
        return None
    return generate(dataset, synth or SynthConfig(), dataset.path)


def generator_command(dataset: "DatasetConfig") -> Optional[str]:
    """The command that generates `dataset` where the config expects it (None for a dataset the generator does not
    know): `python -m kon_ray.synth +dataset=CLIE`, plus `dataset.path=...` when it is not the YAML's own path."""
    if dataset.name not in dataset_choices():
        return None
    command = f"python -m kon_ray.synth +dataset={dataset.name}"
    default = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "dataset" / f"{dataset.name}.yaml")).get("path")  # type: ignore[union-attr]
    if dataset.path != default:
        command += f" dataset.path={shlex.quote(dataset.path)}"
    return command
