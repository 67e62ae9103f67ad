"""Device choice with bad input (table: name -> error naming it), and Apple MPS reported as training in
fp32 by default (there is no MPS here: the machine is simulated with monkeypatch)."""
from __future__ import annotations


import pytest
import torch

from bad_inputs import Bad, assert_refused, rows

from course_lib import runtime
from course_lib.train import TrainConfig, _amp_for

TABLE = [
    Bad("pick_device('banana')", lambda: runtime.pick_device("banana"), ValueError, "'banana' is not a device name"),
    Bad("COURSE_DEVICE=tpu", lambda: runtime.pick_device(), ValueError, "'tpu'"),  # set by the test below
    Bad("seed_everything('x')", lambda: runtime.seed_everything("x"), TypeError, "seed must be a whole number"),
    Bad("configure_threads('x')", lambda: runtime.configure_threads("x"), ValueError, "whole number of threads"),
    Bad("configure_threads(0)", lambda: runtime.configure_threads(0), ValueError, "at least 1"),
]


@pytest.mark.parametrize("row", rows(TABLE))
def test_refused(row, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    assert_refused(row)


def test_a_gpu_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert_refused(Bad("cuda", lambda: runtime.pick_device("cuda"), ValueError, "no CUDA GPU"))
    assert_refused(Bad("mps", lambda: runtime.pick_device("mps"), ValueError, "no Apple GPU"))
    assert runtime.pick_device() == torch.device("cpu")


def test_mps_is_reported_and_trained_in_fp32_by_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    device = runtime.pick_device()
    assert device.type == "mps"
    line = runtime.describe_device(device)
    assert "float32 by default" in line and "amp='on'" in line  # said where the device is reported
    assert _amp_for(device, TrainConfig()) == (False, torch.float32)  # and what train() does
    assert _amp_for(device, TrainConfig(amp="on")) == (True, runtime.pick_dtype(device)) == (True, torch.float16)
