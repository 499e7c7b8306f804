"""The model card (edge/model_card.py): every key survives a read and a write, a broken or
missing card is one clear error, and a card matches only the file it describes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.model_card import ModelCard

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=3), max_leaves=8)


@given(version=st.text(min_size=1, max_size=12), extra=st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in {f for f in ModelCard.__dataclass_fields__}),
    json_values, max_size=5), conf=st.floats(0, 1), golden=st.none() | st.text(min_size=1, max_size=10))
def test_every_key_of_a_card_survives_a_read_and_a_write(version, extra, conf, golden):
    doc = {"version": version, "file": "m.onnx", "sha256": "ab" * 32, "conf": conf, **extra}
    if golden is not None:
        doc["golden"] = golden
    card = ModelCard.from_dict(json.loads(json.dumps(doc)))
    assert card.to_dict() == {**doc, "classes": [], "metrics": {}}
    assert ModelCard.from_dict(card.to_dict()) == card


def test_a_missing_or_broken_card_is_one_clear_error_and_beside_says_none(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    with pytest.raises(ValueError, match="no model card"):
        ModelCard.load(model)
    assert ModelCard.beside(model) is None
    ModelCard.path_for(model).write_text("{not json")
    with pytest.raises(ValueError, match=r"m\.json"):
        ModelCard.load(model)
    ModelCard.path_for(model).write_text(json.dumps({"file": "m.onnx"}))
    with pytest.raises(ValueError, match="no version"):
        ModelCard.load(model)


def test_a_card_matches_only_the_file_it_describes_and_changes_keep_the_rest(tmp_path):
    import hashlib

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    card = ModelCard("1.0", "m.onnx", hashlib.sha256(b"onnx bytes").hexdigest(), extra={"layout": "xywh"})
    card.save(ModelCard.path_for(model))
    loaded = ModelCard.load(model)
    assert loaded == card and loaded.matches(model)
    model.write_bytes(b"other bytes")
    assert not loaded.matches(model)
    shipped = loaded.with_(file="pli-default.onnx", release="1.0", test_sets={"cplid": "test"})
    assert shipped.extra == {"layout": "xywh", "test_sets": {"cplid": "test"}} and shipped.sha256 == card.sha256
