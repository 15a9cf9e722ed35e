"""Security: files students share cannot run code, names cannot escape checkpoints/, broken files never crash the app.

Uploads go through the Save / load panel's ``st.file_uploader`` (AppTest drives it) into
``checkpoints.import_checkpoint``: size-limited, read back only with the weights-only loader as a checkpoint of the
page's variant, then published atomically under a sanitised name. Data: ``mnist-5k``; checkpoints: a temp folder
(tests/conftest.py).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import mnist_5k_subset, new_app, no_exception, open_page
from vaelab import checkpoints
from vaelab.checkpoints import (
    MAX_UPLOAD_MB,
    CheckpointError,
    checkpoint_bytes,
    import_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_trainer,
)
from vaelab.config import ConfigError
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.ui import checkpoint_panel
from vaelab.ui.session import session_key
from vaelab.variants import get_variant

UPLOAD = "panel.ae.upload"


# -- helpers ---------------------------------------------------------------------------------------------------
def _ckpt_root() -> Path:
    return Path(os.environ["VAELAB_CHECKPOINT_DIR"])


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def small() -> DataBundle:
    return mnist_5k_subset(200, 50)


def _trainer(data: DataBundle, variant: str = "ae", seed: int = 0, **overrides) -> Trainer:
    sizes = {"ae": {"code_size": 2}, "vae": {"latent_dim": 2}}[variant]
    config = get_variant(variant).config_cls(**{"hidden_sizes": (16,), "batch_size": 50, "epochs": 2, **sizes,
                                                **overrides})
    trainer = Trainer(variant, config, data, seed=seed)
    trainer.advance(max_steps=2)
    return trainer


@pytest.fixture(scope="module")
def good_bytes(small, tmp_path_factory) -> bytes:
    """A whole ae checkpoint as a student would download it."""
    return save_trainer(_trainer(small), "shared", directory=tmp_path_factory.mktemp("elsewhere")).read_bytes()


@pytest.fixture(scope="module")
def vae_bytes(small, tmp_path_factory) -> bytes:
    return save_trainer(_trainer(small, "vae"), "v", directory=tmp_path_factory.mktemp("vae")).read_bytes()


class _WritesMarker:
    """Unpickling this object runs ``exec``: it writes a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def _malicious(marker: Path, legacy: bool = False) -> bytes:
    """A file that looks like a vaelab checkpoint and runs code when unpickled (torch zip or plain pickle)."""
    payload = {"format_version": 1, "variant": "ae", "config": {}, "input_dim": 784, "n_classes": 10,
               "model_state": {}, "note": _WritesMarker(marker)}
    if legacy:
        return pickle.dumps(payload, protocol=2)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


# -- the server's defaults -------------------------------------------------------------------------------------
def _server_options() -> dict[str, str]:
    """key -> raw value of the [server] table of .streamlit/config.toml (no tomllib on Python 3.10)."""
    text = (REPO / ".streamlit" / "config.toml").read_text()
    table = re.search(r"^\[server\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
    return dict(re.findall(r"^\s*(\w+)\s*=\s*(\"[^\"]*\"|[^\s#]+)", table, re.M))


def test_server_listens_on_localhost_and_limits_uploads_like_the_code():
    options = _server_options()
    assert options["address"] == '"localhost"'
    assert int(options["maxUploadSize"]) == MAX_UPLOAD_MB == checkpoint_panel.MAX_UPLOAD_MB


# -- code in pickles -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["torch-zip", "plain-pickle"])
def test_the_malicious_file_really_runs_code_when_unpickled_unsafely(tmp_path, legacy):
    """The bytes the upload tests use are a live exploit: an ordinary (unsafe) load runs their code."""
    marker = tmp_path / "ran.txt"
    data = _malicious(marker, legacy)
    if legacy:
        pickle.loads(data)
    else:
        torch.load(io.BytesIO(data), weights_only=False)  # deliberately unsafe: the control; vaelab never loads so
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("legacy", [False, True], ids=["torch-zip", "plain-pickle"])
def test_an_uploaded_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, legacy):
    marker = tmp_path / "ran.txt"
    at = open_page("pages/ae.py")
    before = _files_under(_ckpt_root())
    at.file_uploader(key=UPLOAD).set_value(("evil.pt", _malicious(marker, legacy), "application/octet-stream"))
    at.run()
    no_exception(at)
    assert not marker.exists()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Not uploaded: upload 'evil.pt'")
    assert "safe (weights-only) load refuses" in errors[0] or "not a readable vaelab checkpoint" in errors[0]
    assert _files_under(_ckpt_root()) == before  # nothing stored, no temp file left
    assert not marker.exists()


def test_a_good_upload_is_stored_selected_loadable_and_downloadable(good_bytes):
    at = open_page("pages/ae.py")
    at.file_uploader(key=UPLOAD).set_value(("from a friend.pt", good_bytes, "application/octet-stream")).run()
    no_exception(at)
    stored = _ckpt_root() / "ae" / "from-a-friend.pt"
    assert stored.read_bytes() == good_bytes
    assert any("Uploaded `from-a-friend`" in s.value for s in at.success)
    choice = at.selectbox(key="panel.ae.load_choice")
    assert choice.value == str(stored) and choice.format_func(choice.value).startswith("from-a-friend · mnist-5k")
    download = at.get("download_button")
    assert len(download) == 1 and not download[0].disabled
    assert checkpoint_bytes(stored) == good_bytes  # what the download button serves
    at.button(key="panel.ae.load").click().run()
    no_exception(at)
    session = at.session_state[session_key("ae")]
    assert session.model is not None and session.step == 2


def test_an_upload_of_another_variant_or_an_existing_name_is_refused(good_bytes, vae_bytes):
    at = open_page("pages/ae.py")
    at.file_uploader(key=UPLOAD).set_value(("v.pt", vae_bytes, "application/octet-stream")).run()
    assert "holds a 'vae' model, not 'ae'" in at.error[0].value
    assert not (_ckpt_root() / "ae" / "v.pt").exists()

    at.file_uploader(key=UPLOAD).set_value(("same.pt", good_bytes, "application/octet-stream")).run()
    assert (_ckpt_root() / "ae" / "same.pt").is_file()
    at.file_uploader(key=UPLOAD).set_value(("same.pt", vae_bytes[:100] + good_bytes, "x")).run()
    assert "already exists" in at.error[0].value
    assert (_ckpt_root() / "ae" / "same.pt").read_bytes() == good_bytes
    no_exception(at)


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(monkeypatch, good_bytes):
    monkeypatch.setattr(checkpoint_panel, "MAX_UPLOAD_MB", 1)
    read = []
    monkeypatch.setattr(checkpoint_panel, "store_upload", lambda *a, **k: read.append(a) or (None, "read"))
    at = open_page("pages/ae.py")
    big = good_bytes + b"\0" * (1024 * 1024)
    at.file_uploader(key=UPLOAD).set_value(("big.pt", big, "application/octet-stream")).run()
    no_exception(at)
    assert "at most 1 MB" in at.error[0].value and read == []
    assert at.get("file_uploader")[0].proto.max_upload_size_mb == 1  # the browser is told the same limit


def test_import_checkpoint_limits_size_and_unpacked_size(tmp_path, good_bytes):
    with pytest.raises(CheckpointError, match="at most 0.01 MB"):
        import_checkpoint(good_bytes, "x.pt", "ae", directory=tmp_path, max_mb=0.01)
    with pytest.raises(CheckpointError, match="empty"):
        import_checkpoint(b"", "x.pt", "ae", directory=tmp_path)
    # a zip bomb: a small file whose entries unpack to far more than the limit allows
    bomb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as good, zipfile.ZipFile(bomb, "w") as out:
        for info in good.infolist():
            out.writestr(info, good.read(info))
        prefix = good.namelist()[0].split("/")[0]
        out.writestr(f"{prefix}/extra", b"\0" * (8 * 2**20), compress_type=zipfile.ZIP_DEFLATED)
    assert len(bomb.getvalue()) < 2**20
    assert import_checkpoint(bomb.getvalue(), "roomy.pt", "ae", directory=tmp_path, max_mb=4).is_file()
    with pytest.raises(CheckpointError, match="would unpack to 8 MB; at most 4 MB"):
        import_checkpoint(bomb.getvalue(), "bomb.pt", "ae", directory=tmp_path, max_mb=1)
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == ["roomy.pt"]


# -- names -----------------------------------------------------------------------------------------------------
BAD_NAMES = ["../escaped", "../../escaped", "a/b", "a\\b", "..\\escaped", "/tmp/escaped", ".."]


def test_names_with_separators_or_dotdot_are_refused_in_the_save_box(tmp_path, monkeypatch):
    root = tmp_path / "lab" / "checkpoints"
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(root))
    at = open_page("pages/ae.py")
    at.text_input(key="cfg.ae.hidden_sizes").set_value("8").run()
    at.button(key="panel.ae.start").click().run()
    at.button(key="panel.ae.pause").click().run()
    for name in BAD_NAMES:
        at.text_input(key="panel.ae.save_name").set_value(name).run()
        at.button(key="panel.ae.save").click().run()
        no_exception(at)
        message = at.error[0].value
        assert message.startswith("Not saved: checkpoint name") and ("must not" in message), (name, message)
    assert _files_under(tmp_path) == set()  # nothing anywhere, inside or outside checkpoints/
    at.text_input(key="panel.ae.save_name").set_value("fine").run()
    at.button(key="panel.ae.save").click().run()
    assert _files_under(tmp_path) == {root / "ae" / "fine.pt"}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_with_separators_or_dotdot_are_refused_by_the_api(small, good_bytes, tmp_path, name):
    root = tmp_path / "checkpoints"
    trainer = _trainer(small)
    with pytest.raises(CheckpointError, match="must not"):
        save_trainer(trainer, name, directory=root)
    with pytest.raises(CheckpointError, match="must not"):
        import_checkpoint(good_bytes, name + ".pt", "ae", directory=root)
    with pytest.raises(ConfigError, match="unknown variant"):
        checkpoints.checkpoint_path(name, "x", directory=root)  # the variant is a folder name too
    assert _files_under(tmp_path) == set()


def test_an_upload_named_with_a_path_is_refused_in_the_app(tmp_path, monkeypatch, good_bytes):
    root = tmp_path / "lab" / "checkpoints"
    monkeypatch.setenv("VAELAB_CHECKPOINT_DIR", str(root))
    at = open_page("pages/ae.py")
    for name in ("../escaped.pt", "..\\escaped.pt", "sub/inner.pt"):
        at.file_uploader(key=UPLOAD).set_value((name, good_bytes, "application/octet-stream")).run()
        no_exception(at)
        assert "must not contain" in at.error[0].value, name
    assert _files_under(tmp_path) == set()


def test_downloads_serve_only_checkpoint_files_inside_the_folder(tmp_path, good_bytes):
    root = tmp_path / "checkpoints"
    (root / "ae").mkdir(parents=True)
    (root / "ae" / "ok.pt").write_bytes(good_bytes)
    (tmp_path / "secret.pt").write_bytes(b"secret")
    (root / "ae" / "notes.txt").write_text("not a checkpoint")
    assert checkpoint_bytes(root / "ae" / "ok.pt", directory=root) == good_bytes
    for path in (tmp_path / "secret.pt", root / "ae" / ".." / ".." / "secret.pt", root / "ae" / "notes.txt",
                 root / "ae" / "missing.pt", Path("/etc/passwd")):
        with pytest.raises(CheckpointError, match="is not a checkpoint file in"):
            checkpoint_bytes(path, directory=root)


# -- broken files in the app -------------------------------------------------------------------------------------
def _rewritten(data: bytes, **changes) -> bytes:
    payload = torch.load(io.BytesIO(data), weights_only=True)
    payload.update(changes)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _broken_files(good: bytes, vae: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, what the list must say about it)."""
    config = torch.load(io.BytesIO(good), weights_only=True)["config"]
    return {
        "truncated": (good[: len(good) // 2], "not a readable vaelab checkpoint"),
        "random": (os.urandom(3000), "not a readable vaelab checkpoint"),
        "other-variant": (vae, "holds a 'vae' model, not 'ae'"),
        "future-format": (_rewritten(good, format_version=2), "format version 2, this vaelab reads 1"),
        "wrong-shapes": (_rewritten(good, config={**config, "code_size": 5}), "size mismatch for"),
        "bad-config": (_rewritten(good, config={**config, "code_size": 0}), "config is rejected: code_size"),
    }


@pytest.mark.filterwarnings("ignore:skipping a broken checkpoint")  # every rerun lists them again
def test_broken_checkpoints_are_marked_unreadable_and_the_app_keeps_running(good_bytes, vae_bytes):
    folder = _ckpt_root() / "ae"
    folder.mkdir(parents=True)
    broken = _broken_files(good_bytes, vae_bytes)
    for name, (data, _) in broken.items():
        (folder / f"{name}.pt").write_bytes(data)
    (folder / "good.pt").write_bytes(good_bytes)
    at = new_app().run()
    with pytest.warns(UserWarning, match="broken checkpoint"):
        at.switch_page("pages/ae.py").run()
    no_exception(at)
    choice = at.selectbox(key="panel.ae.load_choice")
    labels = {label.split(" · ")[0]: label for label in choice.options}  # AppTest lists the formatted labels
    assert set(labels) == {*broken, "good"}
    for name, (_, why) in broken.items():
        assert labels[name].startswith(f"{name} · unreadable: ") and why in labels[name], labels[name]
    assert "unreadable" not in labels["good"] and choice.value.endswith("good.pt")  # the good one is preselected
    assert not at.button(key="panel.ae.load").disabled

    for name in broken:  # choosing a broken file: Load and Download are off, and a load by hand explains
        choice.set_value(str(folder / f"{name}.pt")).run()
        no_exception(at)
        assert at.button(key="panel.ae.load").disabled and at.get("download_button")[0].disabled, name
        error = checkpoint_panel.load_into_session("ae", folder / f"{name}.pt", "cfg.ae")
        assert error and str(folder / f"{name}.pt") in error, name
    assert at.session_state[session_key("ae")].model is None


def test_the_listing_checks_variant_config_and_shapes_without_loading_weights(good_bytes, vae_bytes, tmp_path):
    for name, (data, _) in _broken_files(good_bytes, vae_bytes).items():
        (tmp_path / "ae").mkdir(exist_ok=True)
        (tmp_path / "ae" / f"{name}.pt").write_bytes(data)
    with pytest.warns(UserWarning):
        infos = {i.name: i for i in list_checkpoints(tmp_path)}
    assert all(info.error for info in infos.values())
    for name, (_, why) in _broken_files(good_bytes, vae_bytes).items():
        assert why in infos[name].error
        with pytest.raises(CheckpointError):  # and loading says so as well
            load_checkpoint(tmp_path / "ae" / f"{name}.pt", expected_variant="ae")


def test_a_checkpoint_with_an_impossible_input_size_is_a_clear_error(tmp_path, good_bytes):
    path = tmp_path / "odd.pt"
    path.write_bytes(_rewritten(good_bytes, input_dim=-5))
    with pytest.raises(CheckpointError, match="config is rejected"):
        load_checkpoint(path)
    path_message = checkpoint_panel.store_upload("ae", "odd.pt", path.read_bytes())
    assert path_message[0] is None and path_message[1].startswith("Not uploaded:")
