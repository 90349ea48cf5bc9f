"""The knobs block: read through the AST, rewritten in place, profile defaults written into templates."""

from __future__ import annotations

import ast

import pytest

from autoresearch.resources import template_path
from autoresearch.backends.knobs import KnobError, read_knobs, render_for_profile, set_knobs
from autoresearch.hardware import CudaDevice, Hardware, profile_for

SCRIPT = '''"""doc"""
import math
LIMIT = 3  # outside the block: not a knob
# --- knobs ---
DEPTH = 4  # blocks
LR = 0.04  # matrix lr
BATCH = 2**13  # tokens
NAME = "L"
FLAG = False
BETAS = (0.8, 0.95)
derived = DEPTH * 2
COMPUTED = math.sqrt(2)
# --- end of knobs ---
x = DEPTH
'''


def test_read_knobs_inside_the_markers_only() -> None:
    knobs = read_knobs(SCRIPT)
    assert list(knobs) == ["DEPTH", "LR", "BATCH", "NAME", "FLAG", "BETAS"]
    assert knobs["BATCH"].value == 8192 and knobs["BATCH"].comment == "tokens"
    assert knobs["BETAS"].value == (0.8, 0.95)
    assert knobs["DEPTH"].line == 5


def test_set_knobs_keeps_comments_and_powers() -> None:
    out = set_knobs(SCRIPT, {"DEPTH": 6, "BATCH": 2**14, "FLAG": True, "LR": 0.02})
    assert "DEPTH = 6  # blocks\n" in out
    assert "BATCH = 2**14  # tokens\n" in out
    assert "FLAG = True\n" in out and "LR = 0.02  # matrix lr\n" in out
    assert out.count("\n") == SCRIPT.count("\n")
    ast.parse(out)
    with pytest.raises(KnobError, match="not knobs"):
        set_knobs(SCRIPT, {"LIMIT": 1})
    with pytest.raises(KnobError, match="is a bool"):
        set_knobs(SCRIPT, {"FLAG": 3})
    with pytest.raises(KnobError, match="does not parse"):
        read_knobs("DEPTH = = 3")


def test_templates_take_the_profile_defaults() -> None:
    h200 = Hardware("Linux", "x86_64", "EPYC", 16, 32, 128.0, cuda=CudaDevice("NVIDIA H200", 139.8, (9, 0)))
    profile = profile_for(h200)
    rendered = render_for_profile(template_path("torch").read_text(), profile)
    knobs = read_knobs(rendered)
    assert (knobs["DEPTH"].value, knobs["WIDTH"].value, knobs["HEAD_DIM"].value) == (8, 512, 128)
    assert (knobs["DEVICE_BATCH_SIZE"].value, knobs["TOTAL_BATCH_SIZE"].value) == (128, 2**19)
    compile(rendered, "train.py", "exec")


def test_template_defaults_are_the_cpu_profile() -> None:
    cpu = profile_for(Hardware("Linux", "x86_64", "Xeon", 2, 2, 24.0))
    text = template_path("torch").read_text()
    assert render_for_profile(text, cpu) == text
