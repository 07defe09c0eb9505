"""`sqnxt-zoo`: list the built-in models and export them as ONNX files."""

from __future__ import annotations

from pathlib import Path

from ..models import ZOO, build_model, model_counts
from ..outputs import atomic_write_files, check_output_file
from .common import ArgumentParser, entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="sqnxt-zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the models with their parameter and MAC counts")
    export = commands.add_parser("export", help="write a model as an ONNX file")
    export.add_argument("name", help="model name (see `sqnxt-zoo list`)")
    export.add_argument("-o", "--output", required=True, help="output .onnx path")
    export.add_argument("--batch", type=int, default=1)
    export.add_argument("--resolution", type=int, default=None, help="input height and width")
    export.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    if args.command == "list":
        from rich.console import Console
        from rich.table import Column, Table

        table = Table("family", "input", "params", "MACs")
        table.columns.insert(0, Column("model", no_wrap=True))   # whole names, even on a narrow terminal
        for entry in ZOO.values():
            params, macs = model_counts(build_model(entry.name))
            res = entry.default_resolution
            table.add_row(entry.name, entry.family, f"1x3x{res}x{res}", f"{params:,}", f"{macs / 1e6:,.1f}M")
        Console().print(table)
        return 0
    check_output_file(args.output, "output", example=f"{args.name}.onnx")
    model = build_model(args.name, batch=args.batch, resolution=args.resolution, seed=args.seed)
    atomic_write_files([(Path(args.output), lambda tmp: Path(tmp).write_bytes(model.SerializeToString()),
                         "the ONNX file")])
    params, macs = model_counts(model)
    print(f"wrote {args.output}: {args.name}, input {model.graph.input[0].name} "
          f"{[d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]}, "
          f"{params:,} params, {macs / 1e6:.1f}M MACs")
    return 0
