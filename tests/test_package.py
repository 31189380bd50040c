"""The package's shape: no import cycle (function-level imports included), small method files."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "keras_local"


def _modules():
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def import_graph():
    """`{module: {keras_local modules it imports anywhere in its code}}`."""
    modules = _modules()

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {resolve(alias.name) for alias in node.names if alias.name.startswith("keras_local")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_local"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    imported.add(full if full in modules else resolve(node.module))
        graph[name] = imported - {name, "keras_local"}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_keras_local_imports_itself_back():
    graph = import_graph()
    assert "keras_local.plots" in graph["keras_local.callbacks.block_logger"]  # the graph sees real imports
    assert cycles(graph) == []


def test_no_method_file_is_over_150_lines():
    long = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "methods").rglob("*.py")
        if path.name != "base.py"
    }
    assert {path: lines for path, lines in long.items() if lines > 150} == {}
