"""The package's shape: no import cycle (function-level imports included), small method files; the built
wheel and sdist."""

import ast
import json
import os
import pathlib

import pytest

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


@pytest.mark.large  # builds the wheel and the sdist, installs each into a fresh environment, runs the demo
def test_the_wheel_and_the_sdist_install_in_a_fresh_environment_and_run_the_demo(tmp_path):
    """What a user gets from `pip install keras-local`: the package with its embedded CIFAR-10 sample and the
    `keras-local` command. The fresh environment takes the heavy dependencies (TensorFlow, Keras) from this
    one's site-packages through PYTHONPATH, which loads no `.pth` file, so keras_local comes from the
    installed artifact only."""
    import site
    import subprocess
    import sys

    import keras_local as kl

    repository = ROOT.parent
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(repository)],
        check=True,
        capture_output=True,
    )
    artifacts = sorted((tmp_path / "dist").iterdir())
    assert [path.name for path in artifacts] == [
        f"keras_local-{kl.__version__}-py3-none-any.whl",
        f"keras_local-{kl.__version__}.tar.gz",
    ]
    dependencies = os.pathsep.join(site.getsitepackages())
    for artifact in artifacts:
        environment = tmp_path / artifact.name.split("-py3")[0].replace(".tar.gz", "-sdist")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
        python = environment / "bin" / "python"
        env = {**os.environ, "PYTHONPATH": dependencies, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(artifact)],
            check=True,
            env=env,
            capture_output=True,
        )
        where = subprocess.run(
            [str(python), "-c", "import keras_local; print(keras_local.__file__, keras_local.__version__)"],
            check=True,
            env=env,
            cwd=tmp_path,  # not the checkout, whose keras_local a `-c` would import
            capture_output=True,
            text=True,
        ).stdout.split()
        assert where[0].startswith(str(environment)) and where[1] == kl.__version__
        run_dir = environment / "demo"
        demo = subprocess.run(
            [str(environment / "bin" / "keras-local"), "train", "--run-dir", str(run_dir)]
            + ["--set", "epochs=1", "--set", "train_examples=128", "--set", "test_examples=128", "--set", "verbose=0"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert demo.returncode == 0, demo.stderr[-2000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["method"] == "gll" and 0.0 <= summary["test_accuracy"] <= 1.0


def _reachable(graph, start):
    seen, stack = set(), [start]
    while stack:
        for other in graph.get(stack.pop(), ()):
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


@pytest.mark.parametrize(
    "module, above",
    [
        ("keras_local.callbacks", "keras_local.model"),  # callbacks read a model; they do not pull the stack in
        ("keras_local.block", "keras_local.own_model"),  # a block holds units; it does not cut user models
        ("keras_local.memory", "keras_local.model"),
        ("keras_local.repairs", "keras_local.model"),
    ],
)
def test_leaves_stay_below_the_modules_above_them(module, above):
    assert above not in _reachable(import_graph(), module)
