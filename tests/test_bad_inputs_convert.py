"""Files course_lib.convert reads: a config.json that is not JSON or lacks a field, a damaged
model.safetensors, a path that is not a checkpoint folder -- each named, with what is wrong
(table: folder contents -> error). Nothing is downloaded: the folders are written here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from bad_inputs import Bad, assert_refused

from course_lib import convert

TENSORS = save({"wte.weight": torch.zeros(4, 2)})
GPT2 = json.dumps({"model_type": "gpt2", "vocab_size": 4, "n_embd": 2, "n_head": 1, "n_layer": 1, "n_positions": 8})


def folder(root: Path, name: str, config: str | None, tensors: bytes | None) -> Path:
    d = root / name
    d.mkdir()
    if config is not None:
        (d / "config.json").write_text(config)
    if tensors is not None:
        (d / "model.safetensors").write_bytes(tensors)
    return d


TABLE = [  # (label, config.json text, model.safetensors bytes, error, phrase with {d} = the folder)
    ("config.json not JSON", "{model_type: gpt2", TENSORS, convert.UnsupportedCheckpoint, "{d}/config.json' is not valid JSON"),
    ("config.json empty", "", TENSORS, convert.UnsupportedCheckpoint, "config.json' is not valid JSON"),
    ("config.json a list", "[1, 2]", TENSORS, convert.UnsupportedCheckpoint, "holds a JSON list"),
    ("config.json without model_type", "{}", TENSORS, convert.UnsupportedCheckpoint, "model_type None"),
    ("config.json lacks a field", json.dumps({"model_type": "gpt2", "vocab_size": 4}), TENSORS, convert.UnsupportedCheckpoint,
     "has no field 'n_embd'"),
    ("unsupported model_type", json.dumps({"model_type": "mamba"}), TENSORS, convert.UnsupportedCheckpoint, "'mamba'"),
    ("model.safetensors empty", GPT2, b"", convert.UnsupportedCheckpoint, "{d}/model.safetensors' is empty"),
    ("model.safetensors cut short", GPT2, TENSORS[:20], convert.UnsupportedCheckpoint, "model.safetensors' cannot be read"),
    ("model.safetensors random bytes", GPT2, os.urandom(100), convert.UnsupportedCheckpoint, "damaged or cut short"),
    ("a tensor missing", GPT2, TENSORS, convert.UnsupportedCheckpoint, "'wpe.weight'"),
    ("no model.safetensors", GPT2, None, FileNotFoundError, "no model.safetensors"),
    ("no config.json", None, TENSORS, FileNotFoundError, "no config.json"),
]


@pytest.mark.parametrize("label, config, tensors, error, phrase", TABLE, ids=[t[0] for t in TABLE])
def test_refused(tmp_path, label, config, tensors, error, phrase):
    d = folder(tmp_path, "ckpt", config, tensors)
    assert_refused(Bad(label, lambda: convert.load_pretrained(d), error, phrase.format(d=d)))


def test_paths_that_are_not_checkpoint_folders(tmp_path):
    assert_refused(Bad("missing", lambda: convert.load_pretrained(tmp_path / "nope"), FileNotFoundError, "nope' does not exist"))
    (tmp_path / "afile").write_text("x")
    assert_refused(Bad("a file", lambda: convert.load_pretrained(tmp_path / "afile"), FileNotFoundError, "afile' is a file"))
    d = folder(tmp_path, "gid", "{", None)
    assert_refused(Bad("generation_ids", lambda: convert.generation_ids(d), convert.UnsupportedCheckpoint, "config.json"))
