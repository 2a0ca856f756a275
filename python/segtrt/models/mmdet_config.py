"""Read an mmdetection config (.py) without running it: module-level assignments, literally evaluated.

An mmdetection config is Python, but the parts segtrt needs (model, test pipeline,
data pre-processor) are plain dict/list/number assignments. This module parses the
file with `ast` and evaluates only literals, `dict(...)`/`list(...)`/`tuple(...)`
calls, names assigned earlier in the file, unary minus and `+` on numbers and lists.
Anything else (imports, function calls, lambdas) is left out as unknown: no code
from the file ever runs. `_base_` files are read the same way and merged as mmengine
merges them (dicts key by key, `_delete_=True` replaces, other values replace).
"""

from __future__ import annotations

import ast
from pathlib import Path

from segtrt import SegtrtError

UNKNOWN = object()  # the value of an assignment this reader does not evaluate
CALLS = {"dict": dict, "list": list, "tuple": tuple}


def read_config(path) -> dict:
    """The merged module-level variables of an mmdetection config file."""
    path = Path(path)
    if not path.is_file():
        raise SegtrtError(f"mmdetection config {path} does not exist")
    return _read(path, set())


def parse_config_text(text: str, source: str = "the config") -> dict:
    """The module-level variables of config text (a file's, or a checkpoint's meta["cfg"]); no _base_ files."""
    variables = _evaluate(text, source)
    if "_base_" in variables:
        raise SegtrtError(f"{source} inherits _base_ files; give the config file itself with --config")
    return variables


def _read(path: Path, seen: set) -> dict:
    if path in seen:
        raise SegtrtError(f"mmdetection config {path} inherits itself")
    variables = _evaluate(path.read_text(encoding="utf-8"), str(path))
    bases = variables.pop("_base_", [])
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            raise SegtrtError(f"{path} inherits {base}, which does not exist at {base_path}")
        merged = merge(merged, _read(base_path, seen | {path}))
    return merge(merged, variables)


def merge(base: dict, override: dict) -> dict:
    """mmengine's Config merge: nested dicts merge unless the override says `_delete_=True`."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict) and not value.get("_delete_", False):
            result[key] = merge(result[key], value)
        else:
            result[key] = {k: v for k, v in value.items() if k != "_delete_"} if isinstance(value, dict) else value
    return result


def _evaluate(text: str, source: str) -> dict:
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as error:
        raise SegtrtError(f"{source} is not a Python config file: line {error.lineno}: {error.msg}") from None
    variables: dict = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            variables[statement.targets[0].id] = _value(statement.value, variables)
    return variables


def _value(node, variables: dict):
    """A literal value of an expression node, or UNKNOWN."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(item, variables) for item in node.elts]
        return UNKNOWN if any(item is UNKNOWN for item in items) else (list if isinstance(node, ast.List) else tuple)(items)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):  # {**other}
            return UNKNOWN
        return {_value(key, variables): _value(value, variables) for key, value in zip(node.keys, node.values)}
    if isinstance(node, ast.Name):
        return variables.get(node.id, UNKNOWN)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CALLS:
        if node.func.id == "dict" and not node.args:
            return {keyword.arg: _value(keyword.value, variables) for keyword in node.keywords if keyword.arg}
        if len(node.args) == 1 and not node.keywords:
            inner = _value(node.args[0], variables)
            return UNKNOWN if inner is UNKNOWN else CALLS[node.func.id](inner)
        return UNKNOWN
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, variables)
        return -inner if isinstance(inner, (int, float)) else UNKNOWN
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _value(node.left, variables), _value(node.right, variables)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)) or (
                isinstance(left, (list, tuple)) and type(left) is type(right)):
            return left + right
    return UNKNOWN
