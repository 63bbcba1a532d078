"""Suites: lists of study entries, shipped as data files inside the package.

``studies/suites/<name>.yaml`` holds a suite: its description, whether it needs a data folder,
its changelog (every change of a study's design made after looking at its results: what, when
and why) and its entries. An entry names the study it runs (a key of the registry), its own key
(unique in the suite: ``--only``, figure folders and the report's anchors use it), optionally a
title, and the parameters that differ from the study's defaults. A study's design in a suite is
therefore its ``Params`` defaults plus the entry's ``params``; both are under version control
and the report shows the resolved design of every study.

Paper configs (``studies/suites/paper_configs/<name>.yaml``) are the sweeps of the papers' own
experiments; :func:`paper_spec` reads one at a context's scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from l2dynamics.errors import ConfigError

SUITES = ("mini", "realdata", "toy", "paper", "regime")


@dataclass
class Entry:
    key: str  # unique in its suite
    study: str  # registry key
    params: dict[str, Any] = field(default_factory=dict)
    title: str | None = None


@dataclass
class Suite:
    name: str
    description: str
    entries: list[Entry]
    needs_data_dir: bool = False
    changelog: list[dict[str, Any]] = field(default_factory=list)

    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    def entry(self, key: str) -> Entry:
        for e in self.entries:
            if e.key == key:
                return e
        raise ConfigError(f"suite {self.name!r} has no study {key!r}; it has: "
                          f"{', '.join(self.keys())}")


def _read_yaml(*parts: str) -> dict[str, Any]:
    import yaml

    path = resources.files("l2dynamics.studies").joinpath("suites", *parts)
    if not path.is_file():
        raise ConfigError(f"{'/'.join(parts)} is not shipped with l2dynamics")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_suite(name: str) -> Suite:
    """The suite `name` (one of :data:`SUITES`), its entries checked against the registry."""
    from l2dynamics.studies.registry import STUDIES

    if name not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(SUITES)} (got {name!r})")
    raw = _read_yaml(f"{name}.yaml")
    entries = []
    for item in raw.get("studies", []):
        entry = Entry(key=item["key"], study=item.get("study", item["key"]),
                      params=dict(item.get("params") or {}), title=item.get("title"))
        if entry.study not in STUDIES:
            raise ConfigError(f"suite {name}: entry {entry.key!r} names the unknown study "
                              f"{entry.study!r}")
        entries.append(entry)
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"suite {name}: duplicate entry keys in {keys}")
    return Suite(name=raw.get("name", name), description=raw.get("description", ""),
                 entries=entries, needs_data_dir=bool(raw.get("needs_data_dir", False)),
                 changelog=list(raw.get("changelog") or []))


def paper_config_dir() -> Any:
    """The folder of the packaged paper configs (a Traversable: works from a wheel)."""
    return resources.files("l2dynamics.studies").joinpath("suites", "paper_configs")


def paper_config_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in paper_config_dir().iterdir()
                  if p.name.endswith(".yaml"))


def read_paper_config(name: str) -> dict[str, Any]:
    """The paper config `name` as written (unscaled)."""
    import yaml

    if name not in paper_config_names():
        raise ConfigError(f"no paper config {name!r}; available: "
                          f"{', '.join(paper_config_names())}")
    return yaml.safe_load(paper_config_dir().joinpath(f"{name}.yaml").read_text(
        encoding="utf-8"))


# found without --data-dir: Debian's package installs them (see l2dynamics.data)
NO_DATA_DIR_NEEDED = ("fashion_mnist",)


def paper_dataset(name: str) -> str:
    """The dataset the paper config `name` reads."""
    from l2dynamics.config import flatten

    return str(flatten(read_paper_config(name).get("base", {})).get("dataset", ""))


def entry_reads_user_files(entry: Entry) -> bool:
    """Whether `entry` reads a paper config whose data only --data-dir can give (MNIST,
    CIFAR-10); Fashion-MNIST is found where the system installs it."""
    config = entry.params.get("config")
    return bool(config) and paper_dataset(str(config)) not in NO_DATA_DIR_NEEDED


def paper_spec(ctx: Any, name: str) -> dict[str, Any]:
    """The sweep of the paper config `name` at the context's scale: the user's data folder,
    ``subset`` training examples, budgets (``k``, ``min_steps``, ``max_steps``) or fixed
    ``steps`` × ``steps_scale``, and the GPU options (:meth:`Context.gpu_options`)."""
    from l2dynamics.config import flatten

    spec = read_paper_config(name)
    flat = flatten(spec.get("base", {}))
    if ctx.data_dir is not None:
        flat["data_dir"] = str(ctx.data_dir)
    elif flat.get("dataset") not in NO_DATA_DIR_NEEDED:
        raise ConfigError(f"the paper config {name} reads dataset files: give --data-dir "
                          "(MNIST and CIFAR-10 files)")
    if ctx.subset:
        flat["n_train"] = int(ctx.subset)
    if "steps" in flat:
        flat["steps"] = ctx.steps(int(flat["steps"]))
    flat.update(ctx.gpu_options(image=flat.get("dataset") == "cifar10"
                                or flat.get("model") in ("cnn", "convnet4", "wrn")))
    spec["base"] = flat
    budget = spec.get("budget")
    if budget:
        budget["k"] = float(budget["k"]) * ctx.steps_scale
        for key in ("min_steps", "max_steps"):
            if key in budget:
                budget[key] = ctx.steps(int(budget[key]))
    return spec


def paper_what(ctx: Any, text: str, name: str, spec: Mapping[str, Any]) -> str:
    """A paper study's description: `text`, its config and the scale it ran at (read from the
    scaled `spec`, so the speed options named are the ones its runs used)."""
    scale = []
    if ctx.steps_scale != 1.0:
        scale.append(f"steps × {ctx.steps_scale:g}")
    if ctx.subset:
        scale.append(f"{ctx.subset} training examples")
    base = spec["base"]
    if base.get("autocast", "none") != "none":
        scale.append(f"{base['autocast']} autocast")
    if base.get("channels_last"):
        scale.append("channels_last")
    return (f"{text} (paper config {name}" + (f"; {', '.join(scale)}" if scale else "") + ")")


def full_base(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec`'s base as a complete flat config without its grid keys (for the studies that lay
    their own grid over a base)."""
    from l2dynamics.config import make_config

    full = make_config(dict(spec["base"])).to_dict()
    for key in ("name", *spec.get("grid", {})):
        full.pop(key, None)
    return full


def resolve_study(key: str, suite: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> tuple[str, Any, Any]:
    """(entry key, study, validated params) for ``l2dynamics study KEY``.

    With `suite`, KEY is an entry of that suite and its params start from the entry's. Without,
    KEY is a registry key (the study's defaults) or, failing that, an entry of the mini or the
    paper suite. `overrides` (``--set``) apply last."""
    from l2dynamics.studies.base import make_params
    from l2dynamics.studies.registry import STUDIES, get_study

    if suite is None and key in STUDIES:
        study = get_study(key)
        return key, study, make_params(study.Params, overrides)
    names = [suite] if suite is not None else list(SUITES)
    for name in names:
        spec = load_suite(name)
        if key in spec.keys():  # noqa: SIM118 (Suite is not a mapping)
            entry = spec.entry(key)
            study = get_study(entry.study)
            return key, study, make_params(study.Params, {**entry.params, **(overrides or {})})
    if suite is not None:
        load_suite(suite).entry(key)  # raises, listing the suite's entries
    get_study(key)  # raises with "did you mean"
    raise AssertionError("unreachable")
