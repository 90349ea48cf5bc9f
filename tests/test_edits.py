"""Applying model replies to the real train.py: search/replace (tolerant but unambiguous), whole file, knobs JSON."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoresearch.agent.edits import (
    DIVIDER, REPLACE, SEARCH, EditError, apply_blocks, apply_knobs, knobs_schema, whole_file,
)
from autoresearch.resources import template_path
from autoresearch.backends.knobs import read_knobs
from autoresearch.harness.integrity import check_script

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout

SRC = template_path("torch").read_text()


def block(search: str, replace: str) -> str:
    return f"{SEARCH}\n{search}\n{DIVIDER}\n{replace}\n{REPLACE}\n"


def test_exact_block() -> None:
    out = apply_blocks(SRC, "I will raise the LR.\n" + block("MATRIX_LR = 0.04  # Muon, for the 2-D weights inside the blocks",
                                                            "MATRIX_LR = 0.05  # Muon, for the 2-D weights inside the blocks"))
    assert read_knobs(out)["MATRIX_LR"].value == 0.05 and check_script(out).ok


def test_trailing_whitespace_and_indentation_are_tolerated() -> None:
    # the model lost the method's indentation and added trailing spaces
    search = "def forward(self, x):   \n    return self.down(F.relu(self.up(x)).square())"
    replace = "def forward(self, x):\n    h = F.relu(self.up(x))\n    return self.down(h * h)"
    out = apply_blocks(SRC, block(search, replace))
    assert "        h = F.relu(self.up(x))\n        return self.down(h * h)" in out
    compile(out, "train.py", "exec")


def test_ambiguous_search_asks_for_context() -> None:
    src = SRC + "\nprint('done')\nprint('done')\n"
    with pytest.raises(EditError, match="matches 2 places"):
        apply_blocks(src, block("print('done')", "print('finished')"))
    with pytest.raises(EditError, match="matches 2 places"):  # also when only the tolerant match finds them
        apply_blocks(src, block("  print('done')  ", "print('finished')"))


def test_miss_says_did_you_mean() -> None:
    with pytest.raises(EditError) as e:
        apply_blocks(SRC, block("MATRIX_LR = 0.4  # Muon for the 2D weights", "MATRIX_LR = 0.05"))
    assert "Did you mean these lines?" in str(e.value) and "MATRIX_LR = 0.04" in str(e.value)
    assert str(e.value).startswith("Edit block 1 of 1")


def test_no_blocks_and_no_change_are_errors() -> None:
    with pytest.raises(EditError, match="No edit blocks found"):
        apply_blocks(SRC, "Let's increase the depth to 6.")
    with pytest.raises(EditError, match="change nothing"):
        apply_blocks(SRC, block("DEPTH = 4  # transformer blocks", "DEPTH = 4  # transformer blocks"))


def test_blocks_apply_in_order() -> None:
    reply = block("DEPTH = 4  # transformer blocks", "DEPTH = 5  # transformer blocks") + "and\n" + block(
        "DEPTH = 5  # transformer blocks", "DEPTH = 6  # transformer blocks")
    assert read_knobs(apply_blocks(SRC, reply))["DEPTH"].value == 6


def test_whole_file() -> None:
    new = SRC.replace("DEPTH = 4", "DEPTH = 3")
    assert whole_file(f"Here it is:\n```python\n{new}```\nDone.") == new
    with pytest.raises(EditError, match="does not parse"):
        whole_file("```python\n" + new.replace("def rms_norm(x):", "def rms_norm(x)") + "```")
    with pytest.raises(EditError, match="complete train.py"):
        whole_file("```python\nDEPTH = 3\n```")


def test_knobs_json() -> None:
    new, desc = apply_knobs(SRC, '```json\n{"description": "deeper", "changes": {"DEPTH": 5, "MATRIX_LR": 0.03}}\n```')
    knobs = read_knobs(new)
    assert (knobs["DEPTH"].value, knobs["MATRIX_LR"].value, desc) == (5, 0.03, "deeper")
    assert apply_knobs(SRC, '{"changes": {"DEPTH": 6.0}}')[0].count("DEPTH = 6  #") == 1
    # a small model that copies the schema's wording (Gemma 3 270M did) gets a description from its changes
    copied = '{"description": "one line: what you change and why", "changes": {"DEPTH": 5}}'
    assert apply_knobs(SRC, copied)[1] == "DEPTH 4 -> 5"
    assert apply_knobs(SRC, '{"changes": {"DEPTH": 5, "MATRIX_LR": 0.03}}')[1] == "DEPTH 4 -> 5, MATRIX_LR 0.04 -> 0.03"
    assert apply_knobs(SRC, '{"changes": {"DEPTH": 5, "NS_STEPS": 5}}')[1] == "DEPTH 4 -> 5"  # unchanged ones left out
    for reply, msg in [("not json", "not valid JSON"), ('{"changes": {}}', "at least one"),
                       ('{"changes": {"DEPHT": 5}}', "not a knob"), ('{"changes": {"VALUE_EMBEDS": 1}}', "must be a bool"),
                       ('{"changes": {"DEPTH": 4}}', "same as now")]:
        with pytest.raises(EditError, match=msg):
            apply_knobs(SRC, reply)


def test_knobs_schema_lists_typed_knobs() -> None:
    schema = knobs_schema(SRC)
    props = schema["properties"]["changes"]["properties"]
    assert props["DEPTH"]["type"] == "integer" and props["MATRIX_LR"]["type"] == "number"
    assert props["VALUE_EMBEDS"]["type"] == "boolean" and "ADAM_BETAS" not in props


def test_tolerant_matching_tiers() -> None:
    # runs of spaces inside a line differ
    drift = "<<<<<<< SEARCH\nLOGIT_SOFTCAP = 15.0   # logits = cap * tanh(logits / cap);   0 disables\n=======\nLOGIT_SOFTCAP = 30.0\n>>>>>>> REPLACE\n"
    assert "LOGIT_SOFTCAP = 30.0\n" in apply_blocks(SRC, drift)
    # the search text left out the trailing comment: the line's comment is kept on the new line
    partial = "<<<<<<< SEARCH\nMLP_RATIO = 4\n=======\nMLP_RATIO = 6\n>>>>>>> REPLACE\n"
    assert "MLP_RATIO = 6  # hidden size of the MLP, in multiples of WIDTH\n" in apply_blocks(SRC, partial)
    # a comment stays only with a new version of its own line
    moved = "<<<<<<< SEARCH\nMLP_RATIO = 4\n=======\nEXTRA = 1\n>>>>>>> REPLACE\n"
    assert "\nEXTRA = 1\n" in apply_blocks(SRC, moved)
    # but a prefix of a different value is not a match, and ambiguity is still refused
    with pytest.raises(EditError, match="does not match"):
        apply_blocks(SRC, "<<<<<<< SEARCH\nMLP_RATIO = 42\n=======\nMLP_RATIO = 6\n>>>>>>> REPLACE\n")
    with pytest.raises(EditError, match="matches 2 places|matches \\d+ places"):
        apply_blocks(SRC, "<<<<<<< SEARCH\n    def forward(self, x):\n=======\n    def forward(self, y):\n>>>>>>> REPLACE\n")


def test_knob_values_small_models_quote() -> None:
    new, _ = apply_knobs(SRC, '{"changes": {"TOTAL_BATCH_SIZE": "2**10", "VALUE_EMBEDS": "True", "MATRIX_LR": "0.03"}}')
    knobs = read_knobs(new)
    assert (knobs["TOTAL_BATCH_SIZE"].value, knobs["VALUE_EMBEDS"].value, knobs["MATRIX_LR"].value) == (1024, True, 0.03)
    for bad in ('"yes"', '"(2**64)**64"', '"(((9**64)**64)**64)**64"', '1e999', '"1e999"', '"__import__(\'os\')"', '"2**100000"', '"DEPTH * 2"'):
        with pytest.raises(EditError, match="must be"):
            apply_knobs(SRC, '{"changes": {"TOTAL_BATCH_SIZE": %s}}' % bad if "yes" not in bad else '{"changes": {"VALUE_EMBEDS": %s}}' % bad)


def test_edits_benchmark_offline_and_live(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """benchmarks/edits.py replays the recorded replies, and asks a live server (here a scripted one)."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_servers import FakeLLM, LLMServer

    bench = [sys.executable, str(REPO_ROOT / "benchmarks" / "edits.py")]
    offline = subprocess.run(bench, capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, offline.stderr
    assert re.search(r"handwritten\s+search_replace\s+12\s+\d+%\s+\d+%", offline.stdout)
    server = LLMServer()
    try:
        FakeLLM.script = ["no blocks here", "Description: x\n<<<<<<< SEARCH\nDEPTH = 4  # transformer blocks\n=======\n"
                          "DEPTH = 5  # transformer blocks\n>>>>>>> REPLACE\n", '{"description": "d", "changes": {"DEPTH": 6}}']
        record = tmp_path / "live.jsonl"
        live = subprocess.run(bench + ["--llm-url", server.url + "/v1", "--model", "fake", "--n", "1", "--formats",
                                       "search_replace", "knobs", "--record", str(record)], capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert live.returncode == 0, live.stderr
    assert re.search(r"fake\s+knobs\s+1\s+100%\s+100%", live.stdout), live.stdout
    assert re.search(r"fake\s+search_replace\s+1\s+0%\s+100%", live.stdout), live.stdout
    assert len(record.read_text().splitlines()) == 2
