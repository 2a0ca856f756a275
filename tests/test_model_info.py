"""The metadata keys are a file format: files exported by earlier versions must keep reading."""

import pytest

from segtrt import SegtrtError
from segtrt.runtime.model_info import CONTRACT, ModelInfo
from segtrt.runtime.preprocess import Preprocess

INFO = ModelInfo(kind="solov2", flavour="trt", class_names=("a", "b"), preprocess=Preprocess(input_size=(256, 256)),
                 max_detections=100, mask_size=(64, 64), mask_frame="image")


def test_keys_are_the_documented_ones_and_round_trip():
    props = INFO.to_props()
    assert set(props) == {"segtrt.contract", "segtrt.kind", "segtrt.flavour", "segtrt.class_names",
                          "segtrt.preprocess", "segtrt.max_detections", "segtrt.mask_size", "segtrt.mask_frame",
                          "segtrt.precision"}
    assert ModelInfo.from_props(props) == INFO
    sourced = ModelInfo.from_props({**props, "segtrt.source": "ab12"})
    assert sourced.source == "ab12" and sourced.to_props()["segtrt.source"] == "ab12"
    calibrated = ModelInfo.from_props({**props, "segtrt.precision": "int8",
                                       "segtrt.calibration": '{"method": "entropy", "images": 64}'})
    assert calibrated.precision == "int8" and calibrated.calibration == {"method": "entropy", "images": 64}
    assert ModelInfo.from_props(calibrated.to_props()) == calibrated


def test_files_from_before_calibration_read_as_fp32():
    props = {key: value for key, value in INFO.to_props().items() if key != "segtrt.precision"}
    assert ModelInfo.from_props(props).precision == "fp32"


def test_unknown_precision_is_refused():
    with pytest.raises(SegtrtError, match="precision must be one of"):
        ModelInfo.from_props({**INFO.to_props(), "segtrt.precision": "int4"})


def test_other_contracts_and_foreign_files_are_refused():
    with pytest.raises(SegtrtError, match="no segtrt metadata"):
        ModelInfo.from_props({})
    with pytest.raises(SegtrtError, match="re-export"):
        ModelInfo.from_props({**INFO.to_props(), "segtrt.contract": CONTRACT.replace("/1", "/0")})
