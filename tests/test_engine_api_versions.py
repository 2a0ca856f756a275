"""The TensorRT version lists of segtrt.engine.build match its code: every name 11.x removed is reached only behind a
feature check, every feature check is listed with its reason, and the removed names are real 10.x API (in the
10.13 stubs that `make typecheck` checks against)."""

import ast
import re
from pathlib import Path

import pytest

from segtrt.engine import build

ENGINE = Path(build.__file__).parent
STUBS = Path(__file__).parents[1] / ".typecheck" / "site" / "tensorrt_bindings" / "tensorrt.pyi"
TENSORRT_MODULES = ("build.py", "backend.py", "machine.py")  # the modules that import tensorrt


def trees():
    return {name: ast.parse((ENGINE / name).read_text()) for name in TENSORRT_MODULES}


def dotted(node) -> str | None:
    """`trt.BuilderFlag` -> "BuilderFlag", `trt` -> "" (names under the tensorrt module), else None."""
    if isinstance(node, ast.Name):
        return "" if node.id == "trt" else None
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr}".lstrip(".")
    return None


def feature_checks(tree) -> set[str]:
    """Names looked up by getattr/hasattr on tensorrt (or an enum of it), with the flag names _legacy_flag gets."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id in ("getattr", "hasattr") and len(node.args) > 1:
            owner, name = dotted(node.args[0]), node.args[1]
            if owner is not None and isinstance(name, ast.Constant) and not name.value.startswith("__"):
                found.add(f"{owner}.{name.value}".lstrip("."))
        if node.func.id == "_legacy_flag":
            found.add(f"BuilderFlag.{node.args[0].value}")
    return found


def test_every_feature_check_is_listed_and_every_removed_name_is_feature_checked():
    # machine.py's hasattr(trt, "Builder") tells the stubs' empty package from the library, not a version
    checked = set().union(*(feature_checks(tree) for tree in trees().values())) - {"Builder"}
    removed_names = {name for name in build.REMOVED_IN_11 if name != "IBuilderConfig.int8_calibrator"}
    assert checked == removed_names | set(build.CHECKED_IN_BOTH)
    assert build.ONLY_IN_11 == {}


def test_no_removed_name_is_reached_directly():
    removed = set(build.REMOVED_IN_11) - {"IBuilderConfig.int8_calibrator"}
    for name, tree in trees().items():
        direct = {dotted(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & removed
        assert not direct, f"{name} uses {direct} without a feature check"


def test_the_calibrator_is_set_only_after_the_int8_flag_was_found():
    tree = trees()["build.py"]
    assignments = [node for node in ast.walk(tree) if isinstance(node, ast.Assign)
                   and any(isinstance(t, ast.Attribute) and t.attr == "int8_calibrator" for t in node.targets)]
    assert len(assignments) == 1
    (assignment,) = assignments
    guard = next(node for node in ast.walk(tree) if isinstance(node, ast.If)
                 and any(inner is assignment for inner in ast.walk(node)))
    flag_calls = [node for node in ast.walk(guard) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "_legacy_flag" and node.args[0].value == "INT8"]
    assert flag_calls and flag_calls[0].lineno < assignment.lineno  # _legacy_flag raises on 11.x first


@pytest.mark.skipif(not STUBS.is_file(), reason=f"no tensorrt-stubs at {STUBS} (`make typecheck` installs them)")
def test_the_removed_names_are_in_the_10_13_stubs():
    text = STUBS.read_text()  # read as text: the stub has syntax errors Python's parser rejects (DESIGN.md)
    classes = dict(re.findall(r"^class (\w+)\b.*?:\n(.*?)(?=^class |\Z)", text, re.M | re.S))
    for name in build.REMOVED_IN_11:
        owner, _, member = name.partition(".")
        assert owner in classes, name
        if member:
            assert re.search(rf"^    (def )?{member}\b", classes[owner], re.M), name
