"""The public Python API: every name in wsol.__all__ resolves, is documented, and wsol.train
trains."""

from __future__ import annotations

from pathlib import Path

import pytest

import wsol


def test_every_public_name_resolves_and_is_documented():
    doc = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    for name in wsol.__all__:
        assert getattr(wsol, name) is not None, name
        assert f"wsol.{name}" in doc, name
    with pytest.raises(AttributeError):
        wsol.no_such_name  # noqa: B018


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_wsol_train_is_callable_and_trains(synth_root, tmp_path):
    import wsol.train as module

    assert callable(wsol.train) and callable(module) and module.train_one_epoch
    cfg = wsol.load_config(None, [f"data.root={synth_root}", "data.workers=0", "epochs=1",
                                  "model.name=smallcnn", "model.pretrained=null", "device=cpu",
                                  "data.resize_size=36", "data.crop_size=32"])  # fmt: skip
    row = wsol.train(cfg, tmp_path / "run", progress=False)
    assert row["epoch"] == 1 and (tmp_path / "run" / "last.pt").is_file()
