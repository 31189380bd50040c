"""Every ```python example in keras_local's docstrings runs.

The examples of one module run in order in one namespace (the module's own
globals plus `kl`, `keras`, `np`, `tf`), the module docstring's first: a
class's example may use the `model` or `train` the module's example made.
They run in a temporary folder holding a link to the repository's
`recipes/`. An example that configures TensorFlow's runtime (logical
devices, a connection to a cluster) runs in its own process, so the tests
after it run on an untouched runtime; one that reads the shared datasets is
skipped where they are not present.
"""

import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_local as kl

pytestmark = pytest.mark.large  # docstring examples: whole training runs, some in their own process

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FENCE = re.compile(r"```python\n(.*?)```", re.S)
RUNTIME_SETUP = ("set_logical_device_configuration", "local_servers(", "connect(")


def _documented(module):
    """The module, then its classes (with their methods) and functions, in source order."""
    yield module
    members = [
        obj
        for obj in vars(module).values()
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__
    ]
    for obj in sorted(members, key=lambda obj: inspect.getsourcelines(obj)[1]):
        yield obj
        if inspect.isclass(obj):
            for member in vars(obj).values():
                member = getattr(member, "__func__", member)
                if inspect.isfunction(member) or isinstance(member, property):
                    yield member


def module_examples():
    """{module name: [example code, ...]} for every module with examples. A
    module whose own docstring has none starts from its package's module
    example (the callbacks' modules share `keras_local.callbacks`' setup)."""
    names = [kl.__name__] + [info.name for info in pkgutil.walk_packages(kl.__path__, kl.__name__ + ".")]
    examples = {}
    for name in names:
        module = importlib.import_module(name)
        # Each object's own docstring (inspect.getdoc would inherit a base class's examples).
        codes = [
            inspect.cleandoc("\n" + code) for obj in _documented(module) for code in FENCE.findall(obj.__doc__ or "")
        ]
        package = importlib.import_module(name.rpartition(".")[0]) if "." in name else None
        if codes and package is not None and not FENCE.findall(module.__doc__ or ""):
            codes = [inspect.cleandoc("\n" + code) for code in FENCE.findall(package.__doc__ or "")] + codes
        if codes:
            examples[name] = codes
    return examples


EXAMPLES = module_examples()


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 25 and sum(map(len, EXAMPLES.values())) >= 50
    assert "keras_local.callbacks" in EXAMPLES and "keras_local" in EXAMPLES


@pytest.mark.parametrize("module_name", sorted(EXAMPLES))
def test_the_docstring_examples_run(module_name, tmp_path, monkeypatch):
    codes = EXAMPLES[module_name]
    if any("../shared/data" in code for code in codes):
        if not SHARED_DATA.exists():
            pytest.skip(f"reads the shared datasets ({SHARED_DATA} is not here)")
        codes = [code.replace("../shared/data", str(SHARED_DATA)) for code in codes]
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    if any(marker in code for code in codes for marker in RUNTIME_SETUP):
        script = (
            f"import {module_name} as module, keras, numpy as np, tensorflow as tf, keras_local as kl\n"
            "namespace = {**vars(module), 'kl': kl, 'keras': keras, 'np': np, 'tf': tf}\n"
            f"for code in {codes!r}:\n    exec(code, namespace)\n"
        )
        command = [sys.executable, "-c", script]
        if any("local_servers(" in code for code in codes):  # servers start only in a private network
            command = kl.cluster.private_network_command(command)
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return
    namespace = {**vars(importlib.import_module(module_name)), "kl": kl, "keras": keras, "np": np, "tf": tf}
    for index, code in enumerate(codes):
        exec(compile(code, f"<{module_name} example {index}>", "exec"), namespace)


README_SECTIONS = ("## Your own model",)  # README sections whose examples run offline, on the embedded sample


def readme_examples(heading):
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return FENCE.findall(section)


@pytest.mark.parametrize("heading", README_SECTIONS)
def test_the_readme_examples_run(heading, tmp_path, monkeypatch):
    codes = readme_examples(heading)
    assert codes, f"README section {heading!r} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for index, code in enumerate(codes):
        exec(compile(code, f"<README {heading} example {index}>", "exec"), namespace)
