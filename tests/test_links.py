"""Links that reproduce a page (vaelab/ui/links.py): form -> link -> form gives the same config for every field of
every variant; bad values are named with the form's message while the rest of the link applies; a link opens the
presenter view and loads a named checkpoint; the server's boot id never travels in a link."""

from __future__ import annotations

import dataclasses
import typing
from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import mnist_5k_subset, new_app, no_exception, session_of
from vaelab.checkpoints import save_trainer
from vaelab.config import ConfigError, field_info, field_types
from vaelab.training import Trainer
from vaelab.ui import links, presenter
from vaelab.ui.config_form import starting_values
from vaelab.ui.pages import page_for_variant
from vaelab.variants import VARIANTS, get_variant

WIDGET_KINDS = ("number_input", "selectbox", "checkbox", "text_input", "slider")


# -- helpers -------------------------------------------------------------------------------------------------------
def open_link(variant: str, params: dict[str, str]) -> AppTest:
    """A session opening the variant's page with ``params`` in its URL, as a pasted link does.

    AppTest cannot open a page with its own URL path as the first run (it finds pages by file name until
    st.navigation has run), so Home runs first, without a query, and the session's link marker is cleared."""
    at = new_app().run()
    del at.session_state[links.APPLIED_KEY]
    at.switch_page(page_for_variant(variant).file)
    at.query_params.update(params)
    at.run()
    no_exception(at)
    return at


def widget(at: AppTest, key: str):
    for kind in WIDGET_KINDS:
        try:
            return getattr(at, kind)(key=key)
        except KeyError:
            continue
    raise AssertionError(f"no widget with key {key!r} on the page")


def field_key(variant: str, name: str) -> str:
    page_widget = links.PAGE_WIDGETS.get(variant, {}).get(name)
    return page_widget.key if page_widget else f"cfg.{variant}.{name}"


def _candidates(kind, value, info):
    if kind is bool:
        return [not value]
    if info.choices is not None:
        return [c for c in info.choices if c != value]
    if typing.get_origin(kind) is tuple:
        return [[value[0] + 1, *value[1:]], [max(1, value[0] - 1), *value[1:]]] if value else [[32], [64, 16]]
    if kind is int:
        return [value + 1, value - 1, value + 2]
    return [value * 2, value / 2, value + 0.5, value - 0.5, -1.0, 0.25]


def changed_values(variant: str) -> dict:
    """A valid config whose every field differs from the first preset's (chosen here, field by field), but for a
    field with a single allowed value."""
    cls = get_variant(variant).config_cls
    values = starting_values(cls, next(iter(cls.PRESETS)), {})
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        if field_info(f).choices is not None and len(field_info(f).choices) == 1:
            continue  # one choice (the sparse code's sigmoid): nothing to change, it round-trips as it is
        page_widget = links.PAGE_WIDGETS.get(variant, {}).get(f.name)
        for candidate in _candidates(types[f.name], values[f.name], field_info(f)):
            if candidate == values[f.name]:
                continue
            if page_widget and page_widget.high is not None and not page_widget.low <= candidate <= page_widget.high:
                continue
            try:
                cls.from_dict({**values, f.name: candidate})
            except ConfigError:
                continue
            values[f.name] = candidate
            break
        else:
            raise AssertionError(f"no other valid value found for {variant}.{f.name}")
    return values


def as_widget_value(value):
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else value


def copied_link(at: AppTest) -> dict[str, str]:
    """The query of the first link under "Copy link" (the normal view's)."""
    url = at.get("code")[0].value
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


# -- round trip ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_field_typed_into_the_form_comes_back_from_the_link(variant):
    cls = get_variant(variant).config_cls
    at = open_link(variant, {})
    wanted = changed_values(variant)
    for name, value in wanted.items():
        widget(at, field_key(variant, name)).set_value(as_widget_value(value))
    at.run()  # the run that takes the values; the next one's link (drawn first on the page) holds them
    at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    typed = cls.from_dict(links.form_values(variant, at.session_state)[1])
    assert typed == cls.from_dict(wanted)  # the widgets took every value
    params = copied_link(at)
    changed = {name for name, value in wanted.items() if value != starting_values(cls, next(iter(cls.PRESETS)),
                                                                                  {})[name]}
    assert len(changed) >= len(wanted) - 1
    assert set(params) == {"preset", "seed", "dataset", *changed}  # every changed field is named
    address_bar = dict(at.query_params.items())
    assert {k: v for k, v in address_bar.items() if k not in ("server", "run")} == params  # it shows the link too
    assert address_bar["run"] == at.session_state["vaelab.run_token"]  # and the private token, never in the link

    reopened = open_link(variant, params)
    assert not reopened.error, [e.value for e in reopened.error]
    assert cls.from_dict(links.form_values(variant, reopened.session_state)[1]) == typed
    for name in wanted:  # the widgets themselves hold the values, not only the state behind them
        assert widget(reopened, field_key(variant, name)).value == widget(at, field_key(variant, name)).value


def test_a_link_names_only_what_differs_from_its_preset_and_sets_seed_and_dataset():
    cls = get_variant("vae").config_cls
    at = open_link("vae", {"preset": "lecture", "beta": "4", "seed": "3", "dataset": "digits"})
    assert not at.error, [e.value for e in at.error]
    expected = cls.from_preset("lecture", beta=4.0)
    assert cls.from_dict(links.form_values("vae", at.session_state)[1]) == expected
    assert at.selectbox(key="cfg.vae._preset").value == "lecture"
    assert at.slider(key="cfg.vae.beta").value == 4.0
    assert at.number_input(key="vaelab.seed").value == 3
    assert at.selectbox(key="vaelab.dataset").value == "digits"
    assert any("Train: digits" in c.value for c in at.sidebar.caption)
    assert copied_link(at) == {"preset": "lecture", "beta": "4.0", "seed": "3", "dataset": "digits"}


def test_link_values_are_exact_for_every_field_of_every_variant():
    """The pure half on its own: each field changed alone is the only field the link names, and reads back equal."""
    for variant in VARIANTS:
        cls = get_variant(variant).config_cls
        preset = next(iter(cls.PRESETS))
        base = starting_values(cls, preset, {})
        for name, value in changed_values(variant).items():
            if value == base[name]:
                continue
            params = links.link_params(variant, preset, {**base, name: value})
            assert set(params) == {"preset", name}, (variant, name, params)
            link = links.read_link(variant, params)
            assert link.errors == []
            assert cls.from_dict(link.values) == cls.from_dict({**base, name: value}), (variant, name)


# -- bad values ------------------------------------------------------------------------------------------------------
def test_bad_link_values_are_named_with_their_range_and_the_rest_of_the_link_applies():
    cls = get_variant("ae").config_cls
    fields = {f.name: field_info(f) for f in dataclasses.fields(cls)}
    at = open_link("ae", {"preset": "no-such-preset", "lr": "20", "shoe_size": "42", "batch_size": "many",
                          "activation": "swish", "seed": "-1", "dataset": "cifar", "present": "maybe",
                          "code_size": "3", "epochs": "7"})
    errors = [e.value for e in at.error]
    assert len(errors) == 8, errors

    def message(name):
        (found,) = [e for e in errors if f"(`{name}`)" in e]
        return found

    assert "no-such-preset" in message("preset") and all(p in message("preset") for p in cls.PRESETS)
    assert fields["lr"].label in message("lr") and fields["lr"].range_text() in message("lr")
    assert "unknown field" in message("shoe_size") and "code_size" in message("shoe_size")
    assert fields["batch_size"].range_text() in message("batch_size") and "many" in message("batch_size")
    assert all(repr(c) in message("activation") for c in fields["activation"].choices)
    assert "[0, 2147483647]" in message("seed")
    assert "'mnist-5k'" in message("dataset") and "cifar" in message("dataset")
    assert "maybe" in message("present")
    # the rest applied, on the first preset (the unknown one was left out)
    expected = cls.from_preset(next(iter(cls.PRESETS)), code_size=3, epochs=7)
    assert cls.from_dict(links.form_values("ae", at.session_state)[1]) == expected
    assert at.number_input(key="cfg.ae.code_size").value == 3
    assert at.number_input(key="vaelab.seed").value == 0 and not at.session_state[presenter.PRESENT_KEY]
    at.button(key=links.DISMISS_KEY).click().run()
    assert not at.error


def test_a_cross_field_rule_is_checked_with_the_links_other_fields():
    """k-sparse: k may not exceed code_size; a link that raises both applies both (fields go in config order)."""
    cls = get_variant("ksparse").config_cls
    start = cls.from_preset(next(iter(cls.PRESETS)))
    big = start.code_size + 10
    link = links.read_link("ksparse", {"code_size": str(big), "k": str(big)})
    assert link.errors == []
    assert cls.from_dict(link.values).k == big
    too_big = links.read_link("ksparse", {"k": str(start.code_size + 1)})
    assert len(too_big.errors) == 1 and "(`k`)" in too_big.errors[0]
    assert cls.from_dict(too_big.values).k == start.k


def test_the_servers_boot_id_is_never_in_a_link_and_is_ignored_in_one():
    at = open_link("ae", {"server": "0123abcd", "epochs": "3"})
    assert not any("server" in e.value for e in at.error)
    assert at.number_input(key="cfg.ae.epochs").value == 3
    assert at.query_params["server"] != "0123abcd"  # the address bar holds this server's id...
    assert "server" not in copied_link(at)  # ... the link none


# -- presenter view and checkpoint -----------------------------------------------------------------------------------
def test_a_link_opens_the_presenter_view_and_loads_a_named_checkpoint():
    cls = get_variant("ae").config_cls
    config = cls(hidden_sizes=(16,), code_size=2, epochs=1, batch_size=50)
    trainer = Trainer("ae", config, mnist_5k_subset(200, 50), seed=1)
    trainer.advance(max_steps=4)
    save_trainer(trainer, "lesson")  # into $VAELAB_CHECKPOINT_DIR (a temporary folder, tests/conftest.py)

    at = open_link("ae", {"checkpoint": "lesson", "present": "1"})
    assert not at.error, [e.value for e in at.error]
    session = session_of(at, "ae")
    assert session.has_model and session.step == 4
    assert cls.from_dict(links.form_values("ae", at.session_state)[1]) == config  # the form shows its config
    assert at.toggle(key=presenter.PRESENT_KEY).value
    assert copied_link(at)["checkpoint"] == "lesson"  # in the very run that loaded it
    presenter_link = dict(parse_qsl(urlsplit(at.get("code")[1].value).query))
    assert presenter_link["present"] == "1" and presenter_link["checkpoint"] == "lesson"


def test_a_missing_checkpoint_is_named_and_the_rest_applies():
    at = open_link("ae", {"checkpoint": "nothing-here", "epochs": "4"})
    (error,) = [e.value for e in at.error]
    assert "(`checkpoint`)" in error and "nothing-here" in error
    assert at.number_input(key="cfg.ae.epochs").value == 4
    assert not session_of(at, "ae").has_model


def test_home_takes_the_presenter_view_from_a_link_and_names_settings_it_has_no_form_for():
    at = new_app()
    at.query_params.update({"present": "1", "lr": "0.1"})
    at.run()
    no_exception(at)
    assert at.toggle(key=presenter.PRESENT_KEY).value
    (error,) = [e.value for e in at.error]
    assert "(`lr`)" in error


def test_a_field_a_page_draws_itself_is_checked_against_that_control():
    """The mixture's components live in the AE + GMM page's own slider (1 to 30), narrower than the config's range."""
    link = links.read_link("ae-gmm", {"n_components": "50", "covariance_type": "diag"})
    (error,) = link.errors
    assert "(`n_components`)" in error and "[1, 30]" in error
    assert link.values["covariance_type"] == "diag"
