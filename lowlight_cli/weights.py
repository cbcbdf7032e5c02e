"""Weights as data: ``weights.toml`` entries, resolution, sha256 checks, safetensors save/load.

A weights entry pins one file by sha256 and says where to find it: a file bundled in the package,
else the Hugging Face cache, else a download from the Hub at a pinned commit. Every load checks the
hash and matches keys strictly; a model without weights is an error, never a random network.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from huggingface_hub import constants as hf_constants
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from . import registry
from .errors import ModelNotFoundError, UsageError, WeightsError

DEFAULT_TOML = Path(__file__).with_name("weights.toml")
TOML_ENV = "LOWLIGHT_WEIGHTS_TOML"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# Every key an entry may have, with its type; the first three are required.
_ENTRY_TYPES: dict[str, type] = {
    "arch": str, "sha256": str, "license": str, "default": bool, "bundled": str, "hub": dict,
    "train_command": str, "trained": dict, "hparams": dict, "metrics": dict,
    "mixture": dict,
}
_REQUIRED = ("arch", "sha256", "license")
_HUB_KEYS = {"repo_id", "filename", "revision"}
# Wrappers that prefix parameter names: DDP ("module.") and torch.compile ("_orig_mod.").
_KEY_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True, kw_only=True)
class WeightsEntry:
    """One ``[weights."arch.tag"]`` table of ``weights.toml``; ``source`` is the file it came from."""

    name: str
    arch: str
    tag: str
    default: bool
    bundled: str | None
    sha256: str
    license: str
    repo_id: str | None
    filename: str | None
    revision: str | None
    train_command: str
    trained: dict[str, Any]
    hparams: dict[str, Any]
    metrics: dict[str, Any]
    source: Path
    mixture: dict[str, Any] = field(default_factory=dict)

    @property
    def bundled_path(self) -> Path | None:
        """Where the bundled file lives: relative to the ``weights.toml`` folder (``lowlight_cli/``)."""
        return None if self.bundled is None else self.source.parent / self.bundled


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonicalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``module.`` from DDP, ``_orig_mod.`` from torch.compile) from every key."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith(_KEY_PREFIXES):
            name = name.partition(".")[2]
        if name in out:
            raise WeightsError(
                f"state dict has {name!r} twice once wrapper prefixes are removed",
                "save the unwrapped model's state_dict (model.module / model._orig_mod)",
            )
        out[name] = value
    return out


def save_weights(state_dict: dict[str, torch.Tensor], path: Path, *, arch: str, hparams: dict[str, Any]) -> str:
    """Write CPU, contiguous float32 safetensors atomically (``images.atomic_file``: the usual file mode),
    with arch and hyperparameters in its metadata.

    Keys are canonicalized (no ``module.`` / ``_orig_mod.`` prefixes). The same tensors give the same
    bytes: see :func:`_sorted_metadata`. Returns the file's sha256.
    """
    from .images import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in canonicalize_keys(state_dict).items()}
    meta = {"arch": arch, "hparams": json.dumps(hparams, sort_keys=True)}
    write_atomic(path, _sorted_metadata(save(tensors, metadata=meta)))
    return sha256_file(path)


def _sorted_metadata(data: bytes) -> bytes:
    """A safetensors file with its ``__metadata__`` keys in sorted order. safetensors writes them from a
    Rust HashMap, whose order changes from process to process, so the same weights got two sha256s.
    The header is JSON after an 8-byte little-endian length, padded with spaces to a multiple of 8;
    tensor offsets count from its end, so a header of another length moves nothing."""
    (size,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def entries(path: Path | None = None) -> list[WeightsEntry]:
    """Every entry of ``path``, else of ``$LOWLIGHT_WEIGHTS_TOML``, else of the packaged ``weights.toml``."""
    if path is None:
        path = Path(os.environ.get(TOML_ENV) or DEFAULT_TOML)
    return list(_parse(Path(path).resolve()))


@functools.cache
def _parse(path: Path) -> tuple[WeightsEntry, ...]:
    hint = f"fix {path}; its header comment describes the format"
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as err:
        raise WeightsError(f"cannot read weights list {path}: {err.strerror}", hint) from err
    except tomllib.TOMLDecodeError as err:
        raise WeightsError(f"{path} is not valid TOML: {err}", hint) from err
    if set(doc) - {"weights"} or not isinstance(doc.get("weights", {}), dict):
        raise WeightsError(f"{path}: only [weights.\"arch.tag\"] tables may appear", hint)
    parsed = tuple(_parse_entry(name, table, path, hint) for name, table in doc.get("weights", {}).items())
    for arch in {e.arch for e in parsed}:
        defaults = [e.name for e in parsed if e.arch == arch and e.default]
        if len(defaults) != 1:
            raise WeightsError(
                f"{path}: arch {arch!r} needs exactly one entry with default = true, has {defaults or 'none'}",
                hint,
            )
    return parsed


def _parse_entry(name: str, table: Any, path: Path, hint: str) -> WeightsEntry:
    def bad(what: str) -> WeightsError:
        return WeightsError(f"{path}: entry {name!r}: {what}", hint)

    if not isinstance(table, dict):
        raise bad("is not a table")
    arch, tag = registry.split_name(name)
    if tag is None or name != name.lower():
        raise bad("names must be lower-case 'arch.tag'")
    unknown = set(table) - set(_ENTRY_TYPES)
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}")
    missing = [key for key in _REQUIRED if key not in table]
    if missing:
        raise bad(f"missing keys {missing}")
    for key, value in table.items():
        if not isinstance(value, _ENTRY_TYPES[key]):
            raise bad(f"{key} must be a {_ENTRY_TYPES[key].__name__}, not {value!r}")
    if table["arch"] != arch:
        raise bad(f"arch = {table['arch']!r} but the name says {arch!r}")
    if not _SHA256.fullmatch(table["sha256"]):
        raise bad("sha256 must be 64 lower-case hex digits")
    hub = table.get("hub", {})
    if hub and (set(hub) != _HUB_KEYS or not all(isinstance(v, str) for v in hub.values())):
        raise bad(f"hub must be a table of strings with exactly {sorted(_HUB_KEYS)}")
    if hub and not _COMMIT.fullmatch(hub["revision"]):
        raise bad("hub.revision must pin a 40-hex commit, not a branch or tag")
    if not hub and "bundled" not in table:
        raise bad("needs a bundled file, a hub location or both")
    return WeightsEntry(
        name=name,
        arch=arch,
        tag=tag,
        default=table.get("default", False),
        bundled=table.get("bundled"),
        sha256=table["sha256"],
        license=table["license"],
        repo_id=hub.get("repo_id"),
        filename=hub.get("filename"),
        revision=hub.get("revision"),
        train_command=table.get("train_command", ""),
        trained=table.get("trained", {}),
        hparams=table.get("hparams", {}),
        metrics=table.get("metrics", {}),
        source=path,
        mixture=table.get("mixture", {}),
    )


def entry_for(name: str) -> WeightsEntry | None:
    """The entry ``name`` selects: ``arch.tag`` that entry, ``arch`` its default; None if the arch has none.

    An unknown tag raises :class:`ModelNotFoundError` listing the known ones.
    """
    arch, tag = registry.split_name(name.strip().lower())
    own = [e for e in entries() if e.arch == arch]
    for e in own:
        if e.tag == tag or (tag is None and e.default):
            return e
    if tag is None:
        return None
    known = ", ".join(e.name for e in own)
    raise ModelNotFoundError(
        f"no weights tagged {tag!r} for {arch!r}",
        f"known: {known}" if known else f"{arch!r} has no trained weights yet; pass --weights PATH",
    )


def _cached_file(entry: WeightsEntry) -> Path | None:
    if entry.repo_id is None:
        return None
    found = huggingface_hub.try_to_load_from_cache(entry.repo_id, entry.filename, revision=entry.revision)
    # Besides a path or None it may return a marker saying the file is known not to exist.
    return Path(found) if isinstance(found, str) else None


def resolve_file(entry: WeightsEntry) -> Path:
    """The entry's file: bundled if present, else the Hugging Face cache, else a Hub download.

    Does not check the hash; :func:`load_state` does, on every load.
    """
    bundled = entry.bundled_path
    if bundled is not None and bundled.is_file():
        return bundled
    cached = _cached_file(entry)
    if cached is not None:
        return cached
    if entry.repo_id is None:
        raise WeightsError(
            f"bundled weights for {entry.name!r} are missing: {bundled}",
            "reinstall lowlight, or pass --weights PATH",
        )
    where = f"{entry.repo_id}/{entry.filename}@{entry.revision[:12]}"
    if hf_constants.is_offline_mode():
        raise WeightsError(
            f"weights for {entry.name!r} are not in the Hugging Face cache and HF_HUB_OFFLINE is set ({where})",
            "set HF_HUB_OFFLINE=0 to download them once, or pass --weights PATH",
        )
    try:
        return Path(huggingface_hub.hf_hub_download(entry.repo_id, entry.filename, revision=entry.revision))
    # huggingface_hub raises its own errors, OSError and its HTTP library's errors (which changes
    # between versions); whatever fails here is a failed download.
    except Exception as err:
        reason = " ".join(str(err).split())  # one line: huggingface_hub messages span several
        raise WeightsError(
            f"cannot download weights for {entry.name!r} from {where}: {type(err).__name__}: {reason}",
            "check the network, HF_ENDPOINT and HF_TOKEN, or pass --weights PATH",
        ) from err


def load_state(path: Path, expected_sha256: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (canonical keys, on CPU) and metadata of a safetensors file, after checking its sha256.

    Metadata holds ``arch`` and ``hparams`` (parsed from JSON) when the file was written by
    :func:`save_weights`. ``expected_sha256=None`` skips the check (a file the user named).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}", "check the path")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise WeightsError(
                f"sha256 mismatch for {path}: expected {expected_sha256}, got {actual}",
                "the file is corrupt or not the one weights.toml pins: delete it so it is fetched again, "
                "or fix the sha256 in weights.toml if the file was retrained on purpose",
            )
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            raw_meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(
            f"{path} is not a readable safetensors file: {err}",
            "weights must be safetensors; write them with `lowlight train` (or save_weights)",
        ) from err
    meta: dict[str, Any] = dict(raw_meta)
    if "hparams" in meta:
        try:
            meta["hparams"] = json.loads(meta["hparams"])
        except json.JSONDecodeError as err:
            raise WeightsError(f"{path}: metadata hparams is not JSON: {err}", "re-export the weights") from err
    return canonicalize_keys(state), meta


def _is_entry_file(path: Path, entry: WeightsEntry) -> bool:
    """Whether ``path`` is where the entry's own file lives (bundled or cached), so its hash applies."""
    return any(
        place is not None and place.is_file() and os.path.samefile(place, path)
        for place in (entry.bundled_path, _cached_file(entry))
    )


def load_model(
    name: str, *, weights: Path | None = None
) -> tuple[registry.ModelSpec, torch.nn.Module, WeightsEntry | None]:
    """The network ``name`` names, with trained weights loaded, on CPU, in eval mode.

    ``weights`` overrides the entry's file; it must hold weights for the same arch, and is
    hash-checked only when it is the entry's own file. The returned entry is the one whose pinned
    file was loaded, None for any other file. Baselines have no network: check ``spec.kind`` first.
    """
    spec = registry.get(name)
    if spec.kind == "baseline":
        raise UsageError(f"{spec.name!r} is a baseline and has no weights to load", "run it without loading a network")
    entry = entry_for(name)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}", "check the path passed to --weights")
        pinned = entry if entry is not None and _is_entry_file(path, entry) else None
    elif entry is not None:
        path, pinned = resolve_file(entry), entry
    else:
        raise WeightsError(
            f"no trained weights for {spec.name!r}",
            "pass --weights PATH or train one with `lowlight train`",
        )
    state, meta = load_state(path, pinned.sha256 if pinned else None)
    _check_arch(meta, spec.name, path)
    hparams = meta.get("hparams") or (entry.hparams if entry else None) or dict(spec.hparams)
    try:
        net = spec.build(**hparams)
    except TypeError as err:
        raise WeightsError(
            f"hyperparameters {hparams} do not fit {spec.name!r}: {err}",
            "the weights were made for another version of the model; fix hparams in weights.toml or retrain",
        ) from err
    _load_strict(net, state, path)
    net.eval()
    return spec, net, pinned


def arch_of_file(path: Path) -> str:
    """The arch a ``.safetensors`` file says it holds weights for (its metadata; no hash check)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no weights file {path}", "give a model name or an existing .safetensors file")
    _, meta = load_state(path, None)
    if not meta.get("arch"):
        raise UsageError(f"{path} does not say which model it is for", "re-export it with `lowlight export`")
    return meta["arch"]


def load_named(source: str) -> tuple[registry.ModelSpec, torch.nn.Module, str]:
    """``(spec, net, label)`` for a model name (``mirnet``, ``neid.lol``) or a ``.safetensors`` file
    (its arch from its metadata, labelled by its path), loaded as :func:`load_model` loads them."""
    if source.endswith(".safetensors"):
        spec, net, _ = load_model(arch_of_file(Path(source)), weights=Path(source))
        return spec, net, source
    spec, net, entry = load_model(source)
    return spec, net, entry.name if entry is not None else spec.name


def init_from(net: torch.nn.Module, path: Path, *, arch: str) -> tuple[str, list[str]]:
    """Load the weights file ``path``, made for ``arch``, into ``net`` (fine-tuning); returns its
    sha256 and the keys of ``net`` the file lacks, which keep their fresh initialisation (a part added
    to the network since, such as MSR-net's exposure gate).

    The file's arch must be ``arch``; every key it holds must be one of ``net``'s, with its shape.
    """
    state, meta = load_state(path, None)
    _check_arch(meta, arch, path)
    current = net.state_dict()
    _load_strict(net, {**current, **state}, path)  # what the file lacks loads as it already is
    return sha256_file(path), sorted(current.keys() - state.keys())


def _check_arch(meta: dict[str, Any], arch: str, path: Path) -> None:
    if meta.get("arch", arch) != arch:
        raise WeightsError(
            f"{path} holds weights for {meta['arch']!r}, not {arch!r}",
            f"use --model {meta['arch']} with this file, or pass weights trained for {arch!r}",
        )


def _load_strict(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = net.state_dict().keys()
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit the network: missing keys: {_first_few(missing)}; "
            f"unexpected keys: {_first_few(unexpected)}",
            "the file was saved from a different architecture or with different hyperparameters",
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shapes differ although the names match
        raise WeightsError(
            f"{path} does not fit the network: {str(err).splitlines()[-1].strip()}",
            "the file was saved with different hyperparameters",
        ) from err


def _first_few(keys: list[str]) -> str:
    return (", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")) or "none"
