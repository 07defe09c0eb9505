"""The package's layering, read from source: no import cycles, and each layer imports only the layers below it.

Every import counts, at module level or inside a function; imports under `if TYPE_CHECKING:` do not (they
only name types for the checker). `schedules/` and `targets/` are installed as `sqnxt_compiler.schedules` and
`sqnxt_compiler.targets`."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"sqnxt_compiler": ROOT / "sqnxt_compiler", "sqnxt_compiler.schedules": ROOT / "schedules",
           "sqnxt_compiler.targets": ROOT / "targets"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom, skipping the bodies of `if TYPE_CHECKING:`."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _internal(name: str) -> str | None:
    """The module `name` stands for: itself if it is one of ours, else its nearest package of ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports_of(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name` imports the submodule pkg.name when there is one, else pkg itself
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        targets.update(t for t in map(_internal, names) if t is not None and t != module)
    return targets


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for module, path in MODULES.items():
        g.add_node(module)
        g.add_edges_from((module, target) for target in _imports_of(module, path))
    return g


def _in(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _offending(graph: nx.DiGraph, importer: str, imported: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in graph.edges if _in(a, importer) and any(_in(b, layer) for layer in imported)]


def test_the_graph_sees_the_known_edges(graph):
    """The parser finds relative, aliased and function-level imports (else every check below is vacuous)."""
    assert graph.has_edge("sqnxt_compiler.schedules.dataflow_choice", "sqnxt_compiler.schedules.conv2d_output_stationary")
    assert graph.has_edge("sqnxt_compiler.pipeline", "sqnxt_compiler.records.apply")  # inside _schedule
    assert graph.has_edge("sqnxt_compiler.passes._conv_graph", "sqnxt_compiler.kernels")
    assert graph.number_of_edges() > 100


def test_no_import_cycles(graph):
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle + cycle[:1]) for cycle in cycles[:5])


@pytest.mark.parametrize("importer, forbidden", [
    # schedules read the kernel contract, never the passes that emit kernels
    ("sqnxt_compiler.schedules", ("sqnxt_compiler.passes", "sqnxt_compiler.pipeline", "sqnxt_compiler.tuning",
                                  "sqnxt_compiler.compiler", "sqnxt_compiler.cli")),
    # kernels are built from shapes alone
    ("sqnxt_compiler.kernels", ("sqnxt_compiler.passes", "sqnxt_compiler.schedules", "sqnxt_compiler.pipeline",
                                "sqnxt_compiler.tuning", "sqnxt_compiler.records", "sqnxt_compiler.compiler")),
    # what compile time reads of a log sits below the pipeline and the search
    ("sqnxt_compiler.records", ("sqnxt_compiler.tuning", "sqnxt_compiler.pipeline", "sqnxt_compiler.compiler",
                                "sqnxt_compiler.cli")),
    ("sqnxt_compiler.passes", ("sqnxt_compiler.schedules", "sqnxt_compiler.pipeline", "sqnxt_compiler.tuning",
                               "sqnxt_compiler.compiler", "sqnxt_compiler.cli")),
    ("sqnxt_compiler.tuning", ("sqnxt_compiler.compiler", "sqnxt_compiler.cli")),
    ("sqnxt_compiler.accel", ("sqnxt_compiler.pipeline", "sqnxt_compiler.tuning", "sqnxt_compiler.compiler",
                              "sqnxt_compiler.cli")),
    # the accelerator in layers: the machine model knows nothing of int8 quantization or the study
    ("sqnxt_compiler.accel.machine", ("sqnxt_compiler.accel.int8", "sqnxt_compiler.accel.study")),
    ("sqnxt_compiler.accel.int8", ("sqnxt_compiler.accel.study",)),
])
def test_layers_import_only_downwards(graph, importer, forbidden):
    assert _offending(graph, importer, forbidden) == []


def test_only_the_cli_and_the_package_api_import_the_compiler(graph):
    importers = {a for a, b in graph.edges if b == "sqnxt_compiler.compiler"}
    assert all(_in(a, "sqnxt_compiler.cli") or a == "sqnxt_compiler" for a in importers), importers


def test_every_schedule_rule_file_is_in_the_ordered_list():
    """RULES is written out by hand: a family that defines a RULE but is missing from it would never run."""
    import importlib

    from sqnxt_compiler.schedules import RULES

    defined = [importlib.import_module(name).RULE for name in MODULES
               if _in(name, "sqnxt_compiler.schedules") and "RULE =" in MODULES[name].read_text()]
    assert defined and set(defined) == set(RULES)
    assert RULES[-1].name == "pooling-elementwise"  # the catch-all comes last


def test_at_most_one_specific_rule_applies_to_each_kernel():
    """The rules' predicates do not overlap (order decides nothing), apart from the catch-all at the end."""
    from tvm import tirx

    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
    from sqnxt_compiler.models import build_model
    from sqnxt_compiler.pipeline import UNSCHEDULED, CompileContext, run_pipeline
    from sqnxt_compiler.schedules import RULES
    from sqnxt_compiler.target import load_target

    spec = load_target("host")
    seen = set()
    for name in ("1.0-SqNxt-23", "resnet-tiny"):
        proto = build_model(name)
        mod = run_pipeline(import_to_relax(proto, resolve_inputs(proto)), CompileContext(spec), UNSCHEDULED)
        for gvar, func in mod.functions.items():
            if isinstance(func, tirx.PrimFunc):
                applying = [rule.name for rule in RULES[:-1] if rule.applies(func, spec)]
                assert len(applying) <= 1, (gvar.name_hint, applying)
                seen.update(applying)
    assert {"winograd_rows", "fused_pixel_chunks", "fused_low_rank", "conv2d-dataflow-choice", "dense"} <= seen
