"""weights.toml parsing, file resolution, sha256 and strict-key checks, and real Hub downloads from a local fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from fake_hub import FakeHub
from lowlight_cli import registry, weights
from lowlight_cli.errors import ModelNotFoundError, UsageError, WeightsError

REPO_ROOT = Path(__file__).resolve().parents[1]
REVISION = "0123456789abcdef0123456789abcdef01234567"


class ToyNet(nn.Module):
    """Two 1x1 convolutions: enough keys and shapes to test loading, nothing more."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, width, 1)
        self.out = nn.Conv2d(width, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.inp(x))


TOY = registry.ModelSpec(name="toynet", kind="learned", summary="test-only toy", build=ToyNet, hparams={"width": 2})


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> registry.ModelSpec:
    """``toynet`` in the registry for one test only, so registry-wide tests elsewhere never see it."""
    monkeypatch.setitem(registry._REGISTRY, "toynet", TOY)
    return TOY


def toy_state(width: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return ToyNet(width=width).state_dict()


def use_toml(folder: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``folder/weights.toml`` and make it the one ``weights.entries()`` reads."""
    (folder / "weights.toml").write_text(body)
    monkeypatch.setenv(weights.TOML_ENV, str(folder / "weights.toml"))


def entry_toml(name: str, sha256: str, *, bundled: str = "", hub_file: str = "", default: bool = False) -> str:
    """One ``weights.toml`` table for a width-3 toynet."""
    lines = [
        f'[weights."{name}"]',
        'arch = "toynet"',
        f'sha256 = "{sha256}"',
        'license = "MIT"',
        f"default = {str(default).lower()}",
        "hparams = { width = 3 }",
    ]
    if bundled:
        lines.append(f'bundled = "{bundled}"')
    if hub_file:
        lines.append(f'hub = {{ repo_id = "test/toynet", filename = "{hub_file}", revision = "{REVISION}" }}')
    return "\n".join(lines) + "\n\n"


def assert_same_state(got: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    assert got.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(torch.as_tensor(got[key]), value), key


def test_save_load_round_trip(tmp_path: Path) -> None:
    state = toy_state()
    sha = weights.save_weights(state, tmp_path / "toy.safetensors", arch="toynet", hparams={"width": 3})
    loaded, meta = weights.load_state(tmp_path / "toy.safetensors", sha)
    assert meta == {"arch": "toynet", "hparams": {"width": 3}}
    assert_same_state(loaded, state)


def test_saved_weights_are_byte_reproducible_and_made_with_the_usual_mode(tmp_path: Path) -> None:
    """safetensors writes its metadata from a Rust HashMap, in an order that changes between processes:
    the same weights got one of two sha256s. save_weights sorts it; files get 0666 less the umask."""
    script = (
        "import sys, torch; from lowlight_cli import weights; torch.manual_seed(0); "
        "state = {'b.weight': torch.randn(3, 4), 'a.bias': torch.randn(3)}; "
        "print(weights.save_weights(state, sys.argv[1], arch='toynet', hparams={'width': 3, 'depth': 2}))"
    )
    shas = set()
    for i, umask in enumerate((0o022, 0o027, 0o022, 0o077)):  # a fresh HashMap order in each process
        path = tmp_path / f"w{i}.safetensors"
        run = subprocess.run([sys.executable, "-c", f"import os; os.umask({umask}); {script}", path],
                             capture_output=True, text=True, check=True)
        shas.add(run.stdout.strip())
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert len(shas) == 1 and len({p.read_bytes() for p in tmp_path.iterdir()}) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_metadata_order_does_not_change_the_bytes(tmp_path: Path) -> None:
    from safetensors.torch import save

    state = toy_state()
    one = weights._sorted_metadata(save(state, metadata={"arch": "toynet", "hparams": "{}"}))
    other = weights._sorted_metadata(save(state, metadata={"hparams": "{}", "arch": "toynet"}))
    assert one == other and b'{"__metadata__":{"arch":"toynet","hparams":"{}"}' in one
    (tmp_path / "w.safetensors").write_bytes(one)
    loaded, meta = weights.load_state(tmp_path / "w.safetensors", None)
    assert meta == {"arch": "toynet", "hparams": {}}
    assert_same_state(loaded, state)


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    sha = weights.save_weights(toy_state(), tmp_path / "toy.safetensors", arch="toynet", hparams={"width": 3})
    with pytest.raises(WeightsError) as err:
        weights.load_state(tmp_path / "toy.safetensors", "0" * 64)
    assert "0" * 64 in err.value.message and sha in err.value.message
    assert err.value.hint


def test_unreadable_file_is_a_weights_error(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        weights.load_state(tmp_path / "junk.safetensors", None)


def test_bundled_entry_loads_default_and_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    state = toy_state()
    sha = weights.save_weights(state, tmp_path / "weights" / "toy.safetensors", arch="toynet", hparams={"width": 3})
    toml = entry_toml("toynet.lol", sha, bundled="weights/toy.safetensors", default=True)
    use_toml(tmp_path, toml, monkeypatch)

    spec, net, entry = weights.load_model("toynet")
    assert spec is toy and entry is not None and entry.name == "toynet.lol"
    assert not net.training
    assert_same_state(net.state_dict(), state)
    assert weights.load_model("toynet.lol")[2] == entry
    with pytest.raises(ModelNotFoundError) as err:
        weights.entry_for("toynet.sid")
    assert "toynet.lol" in err.value.hint


def test_bundled_file_with_wrong_hash_is_refused_even_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy
) -> None:
    weights.save_weights(toy_state(), tmp_path / "toy.safetensors", arch="toynet", hparams={"width": 3})
    use_toml(tmp_path, entry_toml("toynet.lol", "f" * 64, bundled="toy.safetensors", default=True), monkeypatch)
    for explicit in (None, tmp_path / "toy.safetensors"):
        with pytest.raises(WeightsError, match="sha256 mismatch"):
            weights.load_model("toynet", weights=explicit)


def test_user_file_is_not_hash_checked_and_has_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    use_toml(tmp_path, entry_toml("toynet.lol", "f" * 64, bundled="gone.safetensors", default=True), monkeypatch)
    state = toy_state(width=5)
    weights.save_weights(state, tmp_path / "mine.safetensors", arch="toynet", hparams={"width": 5})
    _, net, entry = weights.load_model("toynet", weights=tmp_path / "mine.safetensors")
    assert entry is None
    assert_same_state(net.state_dict(), state)


def test_no_entry_is_an_error_not_random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    use_toml(tmp_path, "# nothing trained yet\n", monkeypatch)
    assert weights.entries() == []
    assert weights.entry_for("toynet") is None
    with pytest.raises(WeightsError, match="no trained weights for 'toynet'") as err:
        weights.load_model("toynet")
    assert "--weights" in err.value.hint
    with pytest.raises(WeightsError, match="not found"):
        weights.load_model("toynet", weights=tmp_path / "missing.safetensors")


def test_missing_bundled_file_without_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy) -> None:
    use_toml(tmp_path, entry_toml("toynet.lol", "f" * 64, bundled="gone.safetensors", default=True), monkeypatch)
    with pytest.raises(WeightsError, match="bundled weights for 'toynet.lol' are missing"):
        weights.load_model("toynet")


def test_baseline_has_no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    flat = registry.ModelSpec(name="flatline", kind="baseline", summary="test-only", enhance=lambda img: img)
    monkeypatch.setitem(registry._REGISTRY, "flatline", flat)
    with pytest.raises(UsageError, match="baseline"):
        weights.load_model("flatline")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda state: state.pop("out.bias"), "missing keys: out.bias; unexpected keys: none"),
        (lambda state: state.update(extra=torch.zeros(1)), "missing keys: none; unexpected keys: extra"),
    ],
)
def test_strict_key_matching(tmp_path: Path, toy, edit, problem: str) -> None:
    state = toy_state()
    edit(state)
    weights.save_weights(state, tmp_path / "toy.safetensors", arch="toynet", hparams={"width": 3})
    with pytest.raises(WeightsError, match=problem):
        weights.load_model("toynet", weights=tmp_path / "toy.safetensors")


def test_shape_mismatch_is_a_weights_error(tmp_path: Path, toy) -> None:
    weights.save_weights(toy_state(width=3), tmp_path / "toy.safetensors", arch="toynet", hparams={"width": 4})
    with pytest.raises(WeightsError, match="does not fit"):
        weights.load_model("toynet", weights=tmp_path / "toy.safetensors")


def test_wrapper_prefixes_are_canonicalized(tmp_path: Path, toy) -> None:
    state = toy_state()
    wrapped = {f"module._orig_mod.{k}": v for k, v in state.items()}
    save_file(wrapped, str(tmp_path / "ddp.safetensors"), metadata={"arch": "toynet", "hparams": '{"width": 3}'})
    _, net, _ = weights.load_model("toynet", weights=tmp_path / "ddp.safetensors")
    assert_same_state(net.state_dict(), state)


def test_file_for_another_arch_is_refused(tmp_path: Path, toy) -> None:
    weights.save_weights(toy_state(), tmp_path / "toy.safetensors", arch="msrnet", hparams={"width": 3})
    with pytest.raises(WeightsError, match="holds weights for 'msrnet'"):
        weights.load_model("toynet", weights=tmp_path / "toy.safetensors")


VALID = f'[weights."toynet.a"]\narch = "toynet"\nsha256 = "{"a" * 64}"\nlicense = "MIT"\n'


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (VALID + 'default = true\nbundled = "x"\nhparam = {}\n', "unknown keys"),
        (VALID + 'default = true\nhub = { repo_id = "a/b", filename = "f", revision = "main" }\n', "40-hex"),
        (VALID + 'bundled = "x"\n', "exactly one entry with default"),
        (VALID + "default = true\n", "bundled file, a hub location or both"),
        (VALID + 'default = "yes"\nbundled = "x"\n', "default must be a bool"),
        ('[weights."toynet"]\narch = "toynet"\n', "arch.tag"),
        ("[weights\n", "not valid TOML"),
    ],
)
def test_malformed_toml_fails_closed(tmp_path: Path, body: str, problem: str) -> None:
    (tmp_path / "weights.toml").write_text(body)
    with pytest.raises(WeightsError, match=problem):
        weights.entries(tmp_path / "weights.toml")


def test_packaged_toml_parses() -> None:
    for entry in weights.entries(weights.DEFAULT_TOML):
        assert registry.get(entry.arch).kind == "learned"


# The Hub scenario runs in subprocesses: huggingface_hub reads HF_ENDPOINT, HF_HOME and
# HF_HUB_OFFLINE when it is imported, exactly as the CLI meets them.
LOAD_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import test_weights
from lowlight_cli import registry, weights
from lowlight_cli.errors import WeightsError
registry.register(test_weights.TOY)
out = []
for name in sys.argv[2:]:
    try:
        _, net, entry = weights.load_model(name)
        out.append({"state": {k: v.tolist() for k, v in net.state_dict().items()}, "entry": entry.name})
    except WeightsError as err:
        out.append({"error": err.message, "hint": err.hint})
print(json.dumps(out))
"""


def load_in_subprocess(env: dict[str, str], *names: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(Path(__file__).parent), *names],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_hub_download_then_cache_then_offline(tmp_path: Path) -> None:
    state = toy_state()
    good = tmp_path / "good.safetensors"
    sha = weights.save_weights(state, good, arch="toynet", hparams={"width": 3})
    weights.save_weights(toy_state(seed=1), tmp_path / "other.safetensors", arch="toynet", hparams={"width": 3})
    toml = (
        entry_toml("toynet.hub", sha, hub_file="good.safetensors", default=True)
        + entry_toml("toynet.bad", sha, hub_file="other.safetensors")  # served bytes differ from the pin
        + entry_toml("toynet.gone", sha, hub_file="gone.safetensors")  # not on the Hub
    )
    (tmp_path / "weights.toml").write_text(toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        weights.TOML_ENV: str(tmp_path / "weights.toml"),
    }

    with FakeHub() as hub:
        hub.add("test/toynet", REVISION, "good.safetensors", good.read_bytes())
        hub.add("test/toynet", REVISION, "other.safetensors", (tmp_path / "other.safetensors").read_bytes())
        online = load_in_subprocess(env | {"HF_ENDPOINT": hub.url}, "toynet", "toynet.hub", "toynet.bad", "toynet.gone")
        good_url = f"/test/toynet/resolve/{REVISION}/good.safetensors"
        assert [r for r in hub.requests if r[1] == good_url] == [("HEAD", good_url), ("GET", good_url)]  # then cache
        seen = len(hub.requests)
        offline = load_in_subprocess(env | {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "1"}, "toynet", "toynet.gone")
        assert len(hub.requests) == seen

    first, second, bad, gone = online
    for result in (first, second, offline[0]):
        assert result["entry"] == "toynet.hub"
        assert_same_state(result["state"], state)
    assert "sha256 mismatch" in bad["error"]
    assert "cannot download" in gone["error"] and "--weights" in gone["hint"]
    assert "HF_HUB_OFFLINE" in offline[1]["error"] and "HF_HUB_OFFLINE=0" in offline[1]["hint"]


def test_top_level_weights_toml_is_the_packaged_one():
    # The package reads lowlight_cli/weights.toml; the top-level copy is what people read. An edit
    # that reached only one of them once left the packaged NEID metrics at 0.
    root = Path(__file__).resolve().parents[1]
    assert (root / "weights.toml").read_bytes() == (root / "lowlight_cli" / "weights.toml").read_bytes()


def test_init_from_keeps_fresh_the_parts_a_file_lacks_and_refuses_keys_the_net_lacks(tmp_path):
    """Fine-tuning a gateless MSR-net file into the gated network: the gate starts fresh, the rest loads."""
    from lowlight_cli.models.msrnet import MSRNet
    init_from = weights.init_from

    hp = dict(scales=(1.0, 100.0), depth=2, width=4)
    torch.manual_seed(0)
    plain = MSRNet(**hp)
    path = tmp_path / "plain.safetensors"
    weights.save_weights(plain.state_dict(), path, arch="msrnet", hparams=hp)
    gated = MSRNet(**hp, exposure_gate=True)
    gate_before = gated.gate.pixel.bias.clone()
    sha, fresh = init_from(gated, path, arch="msrnet")
    assert fresh and all(k.startswith("gate.") for k in fresh) and len(sha) == 64
    assert torch.equal(gated.log_reduce.weight, plain.log_reduce.weight)
    assert torch.equal(gated.gate.pixel.bias, gate_before)
    gated_path = tmp_path / "gated.safetensors"
    weights.save_weights(gated.state_dict(), gated_path, arch="msrnet", hparams={**hp, "exposure_gate": True})
    with pytest.raises(WeightsError, match="unexpected keys: gate\\."):
        init_from(MSRNet(**hp), gated_path, arch="msrnet")
