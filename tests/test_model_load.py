"""Loading a hub model offline: from the local cache without a request, or refused at once
in one line; the hub client is never called when the machine is offline."""

import socket

import pytest
import requests
import transformers.utils.hub as transformers_hub
from huggingface_hub import constants
from transformer_lens import HookedTransformer

from auto_circuit_dcd.errors import ModelUnavailableError
from auto_circuit_dcd.model import load as model_load


@pytest.fixture
def hub(monkeypatch):
    """The hub client replaced by spies: ``calls`` lists each ``from_pretrained`` with the
    offline settings it ran under, ``requests`` each HTTP request (none may be sent);
    ``cached`` says whether the cache holds the model; offline settings start off."""
    state = {"calls": [], "requests": [], "cached": False, "probes": []}

    def from_pretrained(name, **kwargs):
        state["calls"].append((name, constants.HF_HUB_OFFLINE,
                               transformers_hub._is_offline_mode))
        return model_load.tiny_random()

    def send(self, request, **kwargs):
        state["requests"].append(request.url)
        raise AssertionError(f"an HTTP request was sent: {request.url}")

    monkeypatch.setattr(HookedTransformer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(requests.Session, "send", send)
    monkeypatch.setattr(model_load, "_in_cache", lambda name, cache_dir=None: state["cached"])
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(transformers_hub, "_is_offline_mode", False)
    return state


@pytest.fixture
def no_network(monkeypatch, hub):
    """Every connection fails as on a machine without network (no name lookup)."""
    def refuse(address, *a, **k):
        hub["probes"].append(address)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return hub


def test_offline_and_not_cached_is_one_line_at_once(no_network):
    with pytest.raises(ModelUnavailableError) as err:
        model_load.load_model("gpt2")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("'gpt2' is not in the local model cache and the Hugging Face "
                              f"hub ({constants.ENDPOINT}) cannot be reached")
    assert no_network["calls"] == [] and no_network["requests"] == []
    assert no_network["probes"] == [("huggingface.co", 443)]


def test_fetch_model_offline_prints_one_line_and_no_retry_warnings(no_network, capsys):
    from auto_circuit_dcd.cli import main

    assert main(["fetch-model", "--model", "gpt2"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("auto-circuit-dcd fetch-model: error: 'gpt2' is not in the "
                             "local model cache")
    assert "Retrying" not in captured.err and captured.out == ""
    assert no_network["calls"] == [] and no_network["requests"] == []


def test_hf_hub_offline_is_honoured_without_a_probe(hub, monkeypatch):
    def probe(*a, **k):
        raise AssertionError("the network was probed")

    monkeypatch.setattr(socket, "create_connection", probe)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE is set"):
        model_load.load_model("gpt2")
    assert hub["calls"] == []
    hub["cached"] = True  # cached: loaded in offline mode
    model_load.load_model("gpt2")
    assert hub["calls"] == [("gpt2", True, True)]


def test_a_cached_model_loads_offline_without_requests_and_settings_are_restored(no_network):
    no_network["cached"] = True
    model = model_load.load_model("gpt2")
    assert model.cfg.n_layers == 2  # the spy's model, prepared
    assert no_network["calls"] == [("gpt2", True, True)]
    assert constants.HF_HUB_OFFLINE is False and transformers_hub._is_offline_mode is False
    assert no_network["requests"] == []


def test_with_network_the_hub_client_is_used_as_usual(hub, monkeypatch):
    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Connection())
    model_load.load_model("gpt2")
    assert hub["calls"] == [("gpt2", False, False)]


@pytest.mark.parametrize("env, address", [
    ({}, ("huggingface.co", 443)),
    ({"HTTPS_PROXY": "http://proxy.example:3128"}, ("proxy.example", 3128)),
    ({"HTTPS_PROXY": "proxy.example:3128", "NO_PROXY": "huggingface.co"},
     ("huggingface.co", 443)),
])
def test_the_probe_asks_the_hub_or_the_proxy_in_the_environment(monkeypatch, env, address):
    seen = []

    def refuse(target, timeout):
        seen.append((target, timeout))
        raise TimeoutError

    for var in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert model_load.hub_reachable() is False
    assert seen == [(address, model_load.HUB_PROBE_SECONDS)]
