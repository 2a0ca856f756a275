"""The plugin registry is the one description of each plugin: it agrees with the C++ creators' field lists,
every export stand-in it names writes its op type, and export rejects what the creators reject."""

import importlib
import re
from pathlib import Path

import pytest

from segtrt import SegtrtError
from segtrt.ops.registry import PLUGINS, plugin

PLUGIN_DIR = Path(__file__).parents[1] / "plugins"
FIELD = re.compile(r'\{"(\w+)", PluginFieldType::k(\w+)\}')
FIELD_TYPES = {"INT32": ("INT", "INTS"), "FLOAT32": ("FLOAT",), "CHAR": ("STRING",)}


def creator_fields(op_type: str) -> dict:
    """{field name: PluginFieldType} the C++ creator declares, from the plugin folder whose README names op_type."""
    folder = next(p.parent for p in PLUGIN_DIR.glob("*/README.md") if p.read_text().startswith(f"# {op_type} "))
    source = next(folder.glob("*Plugin.cpp")).read_text()
    return dict(FIELD.findall(source))


@pytest.mark.parametrize("op_type", sorted(PLUGINS))
def test_schema_equals_the_creators_fields(op_type):
    fields = creator_fields(op_type)
    schema = {a.name: a.onnx_type for a in plugin(op_type).attributes}
    assert list(schema) == list(fields)
    for name, onnx_type in schema.items():
        assert onnx_type in FIELD_TYPES[fields[name]], name


@pytest.mark.parametrize("op_type", sorted(PLUGINS))
def test_defaults_pass_the_creators_rules_and_the_stand_in_writes_the_op(op_type):
    entry = plugin(op_type)
    inputs = 5 if op_type == "MultilevelRoIAlign" else 3  # four feature maps for the default strides
    entry.validate(entry.defaults(), inputs)
    module_name, class_name = entry.stand_in.split(":")
    assert getattr(importlib.import_module(module_name), class_name).op_type == op_type


def test_unknown_names_and_bad_values_are_clear_errors():
    with pytest.raises(SegtrtError, match="no attribute"):
        plugin("MatrixNMS").resolve({"sigmas": 2.0})
    with pytest.raises(SegtrtError, match="unknown segtrt plugin 'NMS'"):
        plugin("NMS")
    entry = plugin("MultilevelRoIAlign")
    with pytest.raises(SegtrtError, match="feature_strides"):
        entry.validate(entry.defaults(), 3)  # four strides, two maps


def test_export_refuses_an_attribute_the_creator_would_reject():
    from segtrt.export.plugin_nodes import _onnx_attributes

    good = _onnx_attributes("MatrixNMS", {"sigma": 2.0, "max_num": 10}, 3)
    assert good["sigma_f"] == 2.0 and good["max_num_i"] == 10 and good["plugin_version_s"] == "1"
    with pytest.raises(SegtrtError, match="sigma"):
        _onnx_attributes("MatrixNMS", {"sigma": -1.0}, 3)
