"""Launch files, read statically (launch itself is not on PyPI; the live node tests run
the node from its entry point instead): every LaunchConfiguration used is declared, every
declared argument is documented, every node parameter set is in the schema, and every
argument passed to an included launch file is declared there."""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import pytest

from conftest import REPO
from multimodal_perception.config import SPECS

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _module_constants(tree: ast.Module) -> dict[str, object]:
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                with contextlib.suppress(ValueError):
                    out[target.id] = ast.literal_eval(stmt.value)
    return out


def _bindings(tree: ast.Module) -> dict[ast.AST, list[dict[str, object]]]:
    """For calls inside a comprehension over a module constant: the loop variables' values
    for each iteration (so ``DeclareLaunchArgument(name, ...) for name, ... in ARGS`` is
    read as the arguments it declares)."""
    constants = _module_constants(tree)
    out: dict[ast.AST, list[dict[str, object]]] = {}
    for comp in ast.walk(tree):
        if not isinstance(comp, ast.ListComp | ast.GeneratorExp) or len(comp.generators) != 1:
            continue
        gen = comp.generators[0]
        if not isinstance(gen.iter, ast.Name) or gen.iter.id not in constants:
            continue
        names = (
            [e.id for e in gen.target.elts]
            if isinstance(gen.target, ast.Tuple)
            else [gen.target.id]
        )
        rows = []
        for item in constants[gen.iter.id]:
            values = item if isinstance(gen.target, ast.Tuple) else (item,)
            rows.append(dict(zip(names, values, strict=True)))
        for node in ast.walk(comp.elt):
            out[node] = rows
    return out


def _value(expr: ast.AST, env: dict[str, object]) -> object:
    if isinstance(expr, ast.Name) and expr.id in env:
        return env[expr.id]
    return ast.literal_eval(expr)


def launch_facts(path: Path) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    bindings = _bindings(tree)
    declared: dict[str, str] = {}
    used: set[str] = set()
    parameters: set[str] = set()
    included: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        for env in bindings.get(node, [{}]):
            if name == "DeclareLaunchArgument":
                desc = next((k.value for k in node.keywords if k.arg == "description"), None)
                declared[str(_value(node.args[0], env))] = (
                    str(_value(desc, env)) if desc is not None else ""
                )
            elif name == "LaunchConfiguration":
                try:
                    used.add(str(_value(node.args[0], env)))
                except ValueError:
                    pytest.fail(f"{path.name}:{node.lineno}: LaunchConfiguration of a non-literal")
        keywords = {kw.arg for kw in node.keywords}
        if {"executable", "parameters"} <= keywords:  # a Node or LifecycleNode action
            for kw in node.keywords:
                if kw.arg == "parameters" and isinstance(kw.value, ast.List):
                    for item in kw.value.elts:
                        if isinstance(item, ast.Dict):
                            parameters |= {ast.literal_eval(k) for k in item.keys}
        if name == "IncludeLaunchDescription":
            source = ast.unparse(node.args[0])
            target = next((f.name for f in LAUNCH_FILES if f.name in source), source)
            for kw in node.keywords:
                if kw.arg == "launch_arguments":
                    mapping = kw.value.func.value if isinstance(kw.value, ast.Call) else kw.value
                    included[target] = {ast.literal_eval(k) for k in mapping.keys}
    return {
        "declared": declared,
        "used": used,
        "parameters": parameters,
        "included": included,
    }


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH_FILES} >= {"perception.launch.py", "replay.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_launch_configuration_used_is_declared(path):
    facts = launch_facts(path)
    undeclared = facts["used"] - set(facts["declared"])
    assert not undeclared, f"{path.name} uses undeclared launch arguments {sorted(undeclared)}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_declared_argument_is_documented(path):
    declared = launch_facts(path)["declared"]
    bare = [name for name, description in declared.items() if not description.strip()]
    assert not bare, f"{path.name}: arguments without a description: {bare}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_node_parameter_set_is_in_the_schema(path):
    parameters = launch_facts(path)["parameters"]
    unknown = {p for p in parameters if p not in SPECS and p != "use_sim_time"}
    assert not unknown, f"{path.name} sets parameters the node does not have: {sorted(unknown)}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_arguments_passed_to_included_launch_files_are_declared_there(path):
    for target, names in launch_facts(path)["included"].items():
        declared = set(launch_facts(REPO / "launch" / target)["declared"])
        assert names <= declared, f"{path.name} -> {target}: {sorted(names - declared)}"


def test_the_checks_see_the_remapped_topics_and_parameters():
    """The reader is not blind: the perception launch declares its topic arguments through
    a comprehension, remaps them and sets schema parameters."""
    facts = launch_facts(REPO / "launch" / "perception.launch.py")
    assert {"camera_topic", "lidar_topic", "vlm_model_dir", "config_file"} <= set(facts["declared"])
    assert {"camera_topic", "vlm_model_dir"} <= facts["used"]
    assert {"models.directory", "vlm.model_dir"} <= facts["parameters"]


def test_the_managed_argument_starts_an_installed_lifecycle_node():
    """``managed:=true`` picks the lifecycle action and executable, ``false`` the plain
    ones (read from the calls that make the node actions), and setup.py installs both."""
    tree = ast.parse((REPO / "launch" / "perception.launch.py").read_text())
    setup = (REPO / "setup.py").read_text()
    made = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "_perception_node":
            kind, executable, condition = node.args
            made[_call_name(condition)] = (kind.id, ast.literal_eval(executable))
            assert ast.unparse(condition.args[0]) == "managed"
    assert made == {
        "IfCondition": ("LifecycleNode", "multimodal_perception_managed_node"),
        "UnlessCondition": ("Node", "multimodal_perception_node"),
    }
    for _, executable in made.values():
        assert f"{executable} = " in setup
