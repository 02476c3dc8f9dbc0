"""``python -m kspace_mim.bench data|train|tables``: the command line of the benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kspace_mim.bench import __doc__ as DOC
from kspace_mim.bench.data import bench_data
from kspace_mim.bench.memory import knee_grid, training_memory
from kspace_mim.bench.tables import memory_lines, write_tables
from kspace_mim.bench.timing import machine
from kspace_mim.bench.train import ENCODERS, bench_train, train_step_rate
from kspace_mim.files import write_text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kspace_mim.bench", description=DOC)
    sub = parser.add_subparsers(dest="what", required=True)
    p_data = sub.add_parser("data", help="data pipeline throughput vs fastMRI and a bare read")
    p_data.add_argument(
        "--data", type=Path, help="a multicoil folder (default: synthetic, knee-sized)"
    )
    p_data.add_argument("--workers", type=int, default=0)
    p_data.add_argument("--repeats", type=int, default=7)
    p_data.add_argument("--size", type=int, default=320, help="synthetic recon size")
    p_data.add_argument("--coils", type=int, default=15, help="synthetic coils")
    p_data.add_argument("--batch", type=int, default=4, help="slices per device step")
    p_train = sub.add_parser("train", help="training-step throughput and memory per encoder")
    # _train_one: one encoder, in the process that bench train starts for it
    for p in (p_train, sub.add_parser("_train_one")):
        p.add_argument("--size", default="tiny")
        p.add_argument("--grid", default="128", help="N (square) or HxW, e.g. 640x368")
        p.add_argument("--coils", type=int, default=8)
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--override", action="append", default=[], help="encoder config override")
    p_train.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated")
    sub.choices["_train_one"].add_argument("name", choices=sorted(ENCODERS))
    sub.choices["_train_one"].add_argument("--device", default="cpu")
    for p in (p_data, p_train):
        p.add_argument("--out", type=Path, help="write the JSON here too")
    p_memory = sub.add_parser(
        "memory",
        help="peak training memory per family and preset (measured on CUDA, else estimated)",
    )
    p_memory.add_argument("--families", default=",".join(ENCODERS), help="comma-separated")
    p_memory.add_argument("--sizes", default="tiny,small,base", help="presets, comma-separated")
    p_memory.add_argument(
        "--grid", default="knee", help="HxW, N, or knee: each family's grid on the knee download"
    )
    p_memory.add_argument("--coils", type=int, default=15)
    p_memory.add_argument("--batch", type=int, default=1, help="slices per GPU")
    p_memory.add_argument(
        "--precision", default="bf16-mixed", help="32-true | bf16-mixed | 16-mixed"
    )
    p_memory.add_argument("--override", action="append", default=[], help="model config override")
    p_memory.add_argument("--out", type=Path, help="write the JSON here too")
    p_tables = sub.add_parser("tables", help="README / docs/bench.md tables from bench JSON files")
    p_tables.add_argument("json", nargs="+", type=Path, help="outputs of bench data / train")
    p_tables.add_argument("--root", type=Path, default=None, help="repository (default: this)")
    args = parser.parse_args(argv)

    if args.what == "tables":
        print(write_tables(args.json, args.root))
        return
    if args.what == "_train_one":
        row = train_step_rate(
            args.name,
            args.size,
            args.grid,
            args.coils,
            args.batch,
            args.repeats,
            args.device,
            tuple(args.override),
        )
        print(json.dumps(row))
        return
    if args.what == "memory":
        memory_command(args)
        return
    if args.what == "data":
        args_ = (args.data, args.workers, args.repeats, args.size, args.coils, args.batch)
        result = {"data": bench_data(*args_)}
    else:
        encoders = tuple(args.encoders.split(","))
        result = {
            "train": bench_train(
                args.size,
                args.grid,
                args.coils,
                args.batch,
                args.repeats,
                encoders,
                tuple(args.override),
            )
        }
    result["machine"] = machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_text(args.out, text)


def memory_command(args: argparse.Namespace) -> dict:
    """``bench memory``: a row per family and preset, a progress line each, the table."""
    from tqdm import tqdm

    rows = []
    cases = [(f, s) for f in args.families.split(",") for s in args.sizes.split(",")]
    for family, size in tqdm(cases, desc="bench memory", unit="model"):
        grid = "x".join(map(str, knee_grid(family))) if args.grid == "knee" else args.grid
        rows.append(
            training_memory(
                family,
                size,
                grid,
                args.coils,
                args.batch,
                args.precision,
                tuple(args.override),
            )
        )
    result = {"memory": rows, "machine": machine()}
    print("\n".join(memory_lines([result])))
    if args.out:
        write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
