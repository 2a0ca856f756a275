"""mmdetection configs are read, never run: literal assignments, _base_ merging as mmengine merges."""

import pytest

from segtrt import SegtrtError
from segtrt.models.mmdet_config import UNKNOWN, parse_config_text, read_config


def test_base_files_merge_key_by_key_and_delete_replaces(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.py").write_text(
        "norm = dict(type='GN', num_groups=32)\n"
        "model = dict(type='SOLOv2', mask_head=dict(num_classes=80, norm_cfg=norm, strides=[8, 8, 16, 32, 32]),\n"
        "             test_cfg=dict(score_thr=0.1, nms_pre=500))\n")
    (tmp_path / "child.py").write_text(
        "_base_ = ['base/model.py']\n"
        "model = dict(mask_head=dict(num_classes=3), test_cfg=dict(_delete_=True, score_thr=0.3))\n"
        "scale = (1333, 800)\n")
    config = read_config(tmp_path / "child.py")
    head = config["model"]["mask_head"]
    assert head == {"num_classes": 3, "norm_cfg": {"type": "GN", "num_groups": 32}, "strides": [8, 8, 16, 32, 32]}
    assert config["model"]["test_cfg"] == {"score_thr": 0.3}
    assert config["scale"] == (1333, 800)


def test_code_is_never_run_and_non_literals_are_unknown(tmp_path):
    marker = tmp_path / "ran"
    config = parse_config_text(f"import os\nside = os.system('touch {marker}')\nmodel = dict(depth=-50 + 100, "
                               "size=[1, 2] + [3], stem=side)\n")
    assert not marker.exists()
    assert config["side"] is UNKNOWN
    assert config["model"] == {"depth": 50, "size": [1, 2, 3], "stem": UNKNOWN}


def test_bad_configs_are_one_clear_line(tmp_path):
    with pytest.raises(SegtrtError, match="does not exist"):
        read_config(tmp_path / "missing.py")
    (tmp_path / "broken.py").write_text("model = dict(\n")
    with pytest.raises(SegtrtError, match="not a Python config file"):
        read_config(tmp_path / "broken.py")
    (tmp_path / "orphan.py").write_text("_base_ = './nowhere.py'\n")
    with pytest.raises(SegtrtError, match="inherits ./nowhere.py, which does not exist"):
        read_config(tmp_path / "orphan.py")
