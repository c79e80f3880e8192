"""``wsol sweep``: the fair protocol's hyperparameter search (Choe et al., CVPR 2020) on Optuna.

Each trial is an ordinary run folder: ``wsol train CONFIG [overrides] [trial's values]`` in a
child process (``torchrun`` with ``nproc > 1``), scored by the val split's metric of its last
epoch (``select_metric``; ``auto``: MaxBoxAccV2 with boxes, PxAP with masks only). The study lives
in Optuna's storage: an SQLite file in the sweep folder by default, or a PostgreSQL / MySQL URL
that many machines share; each machine runs the same command and Optuna hands out the trials.

* ``trials`` is the study's total of complete trials: running the command again continues the
  study until it has that many (an interrupted sweep is finished by running it again). Two
  workers never run one trial twice, and never complete more than ``trials`` together: a trial
  that would be one too many ends at once as pruned (``note: surplus``).
* A worker's trials send heartbeats; a killed worker's trial is marked failed once its
  heartbeat is older than the grace period, and is retried with the same values, resuming its
  run folder (the trainer dies with its worker: no orphan keeps training).
* ``prune``: Optuna's median pruner on the per-epoch val metric (runs evaluate every
  ``eval_every`` epochs).

Outputs in ``out``: ``sweep.csv`` (trial, state, val metric, values, run folder), ``best.yaml``
(the chosen config, ready for ``wsol train``), ``plots/<key>.png`` (val metric against each
hyperparameter), ``trials/trial_<n>`` (the run folders) and ``logs/`` (each trial's output);
:func:`evaluate_best` (``--test-best``) trains ``best.yaml`` with several seeds and evaluates
them on test.
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import json
import math
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import ConfigError, check_plain_yaml, config_from_dict, load_config, save_config

SAMPLERS = ("random", "tpe")
#: seconds a SQLite write waits for another worker's before the database counts as locked
SQLITE_WAIT_S = 10.0
KINDS = ("float", "int", "categorical")


# ------------------------------------------------------------------------------ the space
@dataclass(frozen=True)
class Dimension:
    """One searched config key: ``float`` / ``int`` in [low, high] (``log``: log-uniform) or
    ``categorical`` over ``choices``."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = field(default_factory=tuple)
    #: another key of the space (listed before this one) whose drawn value bounds this one from
    #: above: SPG's low thresholds are drawn at most their high ones
    at_most: str | None = None

    def suggest(self, trial, drawn: dict | None = None):
        if self.kind == "float":
            high = self.high
            if self.at_most is not None and drawn is not None and self.at_most in drawn:
                high = max(self.low, min(self.high, float(drawn[self.at_most])))
            return trial.suggest_float(self.key, self.low, high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))


def read_space(
    path: str | Path, base: dict | None = None, overrides: list[str] | tuple = ()
) -> list[Dimension]:
    """The dimensions of a space file: ``section.key: {type, low, high, log}`` or
    ``section.key: {type: categorical, choices: [...]}``. Every problem is reported with the
    file and line; every key must be a config key that accepts the values, checked on ``base``
    (the sweep's config, as a dict) with its ``overrides`` (without them: the method whose
    parameters the space's ``method.*`` keys are)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search space {path} does not exist")
    text = path.read_text(encoding="utf-8")
    check_plain_yaml(text, str(path))
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: a search space maps config keys to ranges, e.g. optim.lr:")
    lines = {k.value: k.start_mark.line + 1 for k, _ in root.value} if root is not None else {}
    dims, errors = [], []
    for key, spec in data.items():
        where = f"{path}:{lines.get(key, '?')}: {key}"
        try:
            dims.append(_dimension(str(key), spec))
        except ValueError as err:
            errors.append(f"{where}: {err}")
            continue
    errors += _probe_space(dims, path, lines, base, list(overrides))
    drawn_before: set = set()
    for d in dims:
        if d.at_most is not None and d.at_most not in drawn_before:
            errors.append(
                f"{path}:{lines.get(d.key, '?')}: {d.key}: at_most {d.at_most} must be a key of "
                "the space listed before it"
            )
        drawn_before.add(d.key)
    if errors:
        raise ConfigError(f"{path}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    return dims


def _dimension(key: str, spec) -> Dimension:
    if not isinstance(spec, dict):
        raise ValueError(
            "must be a mapping such as {type: float, low: 0.001, high: 0.1, log: true}"
        )
    unknown = set(spec) - {"type", "low", "high", "log", "choices", "at_most"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    kind = spec.get("type", "categorical" if "choices" in spec else "float")
    if kind not in KINDS:
        raise ValueError(f"type must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError("a categorical dimension needs a non-empty list of choices")
        return Dimension(key, kind, choices=tuple(choices))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"a {kind} dimension needs numbers low and high") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"low and high must be finite numbers, not {spec['low']!r}, {spec['high']!r}"
        )
    log = bool(spec.get("log", False))
    if not low < high or (log and low <= 0):
        raise ValueError(f"needs low < high{' and low > 0 (log)' if log else ''}: {low}, {high}")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ValueError("an int dimension needs whole numbers low and high")
    at_most = spec.get("at_most")
    if at_most is not None and (kind != "float" or not isinstance(at_most, str)):
        raise ValueError("at_most: another float key of the space, for a float dimension")
    return Dimension(key, kind, low, high, log, at_most=at_most)


def _owner(keys: list[str]) -> str | None:
    """The method whose parameters all of ``keys`` (``method.*``) are, if one is."""
    from .methods import list_methods
    from .methods.base import method_fields

    own = [
        k.removeprefix("method.") for k in keys if k.startswith("method.") and k != "method.method"
    ]
    if not own:
        return None
    for name in list_methods():
        if set(own) <= set(method_fields(name)):
            return name
    return None


def _probe_space(
    dims: list[Dimension], path: Path, lines: dict, base=None, overrides=None
) -> list[str]:
    """Every key at both ends of its range (every choice of a categorical one), checked against
    the config together, as trials draw them (an ``at_most`` key at most its bound): one error
    line per problem, naming the key's line in the space file."""
    numeric = [d for d in dims if d.kind != "categorical"]
    categorical = [d for d in dims if d.kind == "categorical"]
    probes = []
    for end in ("low", "high"):
        probe = {}
        for d in numeric:
            value = d.low if end == "low" else d.high
            value = int(value) if d.kind == "int" else value
            if d.at_most is not None and d.at_most in probe:
                value = max(d.low, min(value, probe[d.at_most]))
            probe[d.key] = value
        probe.update({d.key: d.choices[0] for d in categorical})
        probes.append(probe)
    for d in categorical:
        probes += [{**probes[0], d.key: choice} for choice in d.choices[1:]]
    errors: list[str] = []
    overrides = list(overrides or [])
    method = _owner([d.key for d in dims])
    named = any(o.startswith("method.method=") for o in overrides) or (
        (base or {}).get("method", {}).get("method")
        if isinstance((base or {}).get("method"), dict)
        else None
    )
    if method is not None and not named and "method.method" not in {d.key for d in dims}:
        overrides.append(f"method.method={method}")
    for probe in probes:
        try:
            config_from_dict(base or {}, [*overrides, *(override(k, v) for k, v in probe.items())])
        except ConfigError as err:
            for line in str(err).split("\n")[1:]:
                line = line.strip()
                key = line.split(":", 1)[0]
                if key in lines:  # said once, at the key's line
                    detail = line.removeprefix(f"{key}: ")
                    message = f"{path}:{lines[key]}: {key}: {detail}"
                else:
                    message = f"{path}: {line}"
                if message not in errors:
                    errors.append(message)
    return errors


def override(key: str, value) -> str:
    """``key=value`` as ``wsol train`` reads it back (YAML) exactly."""
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={json.dumps(value) if isinstance(value, str) else value}"


# ------------------------------------------------------------------------------ the study
def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(out / 'study.db').resolve()}"


def _retry_callback():
    """Optuna's callback that retries a trial whose heartbeat went stale (its name since 4.9)."""
    import optuna.storages as storages

    return (
        getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
        or storages.RetryFailedTrialCallback
    )


def open_study(
    url: str,
    name: str,
    sampler: str,
    seed: int | None,
    prune: bool,
    heartbeat: float,
    lock_wait: float = SQLITE_WAIT_S,
):
    import optuna
    from optuna.storages import RDBStorage

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
    # a SQLite write waits at most this long for another worker's; a database that stays
    # locked (another process holds it) is reported within seconds, not retried for minutes
    engine = {"connect_args": {"timeout": lock_wait}} if url.startswith("sqlite") else {}
    for attempt in range(4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # the retry callback's keyword since Optuna 4.9, and before it
                params = inspect.signature(RDBStorage).parameters
                keyword = (
                    "heartbeat_stale_trial_callback"
                    if "heartbeat_stale_trial_callback" in params
                    else "failed_trial_callback"
                )
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=max(1, int(heartbeat)),
                    grace_period=max(2, int(3 * heartbeat)),
                    **{keyword: _retry_callback()(max_retry=3)},
                )
            break
        except ImportError as err:
            raise ValueError(
                f"the storage {url.split(':', 1)[0]} needs a database driver ({err}); for "
                "PostgreSQL: pip install 'wsol[postgres]'"
            ) from None
        except Exception as err:  # SQLAlchemy errors: no server, a wrong password, or two
            if "database is locked" in str(err):  # workers creating the tables at once
                raise ValueError(
                    f"the study database {_safe(url)} is locked by another process (it waited "
                    f"{lock_wait:g} s): stop that process, or give another --storage"
                ) from None
            if attempt == 3:
                raise ValueError(f"cannot open the study storage {_safe(url)}: {err}") from None
            time.sleep(1.0 + attempt)
    if sampler == "random":
        made = trial_seeded_sampler(seed) if seed is not None else optuna.samplers.RandomSampler()
    else:
        made = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if prune else optuna.pruners.NopPruner()
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=made,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def trial_seeded_sampler(seed: int):
    """A :class:`TrialSeededSampler` that Optuna accepts as a sampler (a ``BaseSampler``)."""
    import optuna

    class Sampler(TrialSeededSampler, optuna.samplers.BaseSampler):
        pass

    return Sampler(seed)


class TrialSeededSampler:
    """Random search whose every draw is a function of the study's seed, the trial's number and
    the parameter's name, so that a study is reproducible and its trials differ however many
    workers share it (Optuna's ``RandomSampler(seed)`` gives every worker that starts with one
    seed the same sequence: two workers would evaluate identical trials). Draws as
    ``RandomSampler`` does: uniform or log-uniform floats and ints (steps kept), uniform
    categories."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def _rng(self, trial, name: str):
        import zlib

        import numpy as np

        return np.random.default_rng([self.seed, trial.number, zlib.crc32(name.encode())])

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, distribution):
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        rng = self._rng(trial, param_name)
        if isinstance(distribution, CategoricalDistribution):
            return distribution.choices[int(rng.integers(len(distribution.choices)))]
        low, high = distribution.low, distribution.high
        if isinstance(distribution, IntDistribution):
            if distribution.log:
                value = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
                return int(min(max(round(value), low), high))
            step = distribution.step
            return int(low + step * int(rng.integers((high - low) // step + 1)))
        if isinstance(distribution, FloatDistribution):
            if distribution.log:
                return float(math.exp(rng.uniform(math.log(low), math.log(high))))
            if distribution.step is not None:
                steps = int(round((high - low) / distribution.step))
                return float(low + distribution.step * int(rng.integers(steps + 1)))
            return float(rng.uniform(low, high))
        raise ValueError(f"the sweep cannot draw a {type(distribution).__name__}")

    def before_trial(self, study, trial):
        pass

    def after_trial(self, study, trial, state, values):
        pass

    def reseed_rng(self) -> None:
        pass


def _safe(url: str) -> str:
    """The URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def check_same_study(study, identity: dict) -> None:
    """Refuse to continue a study made from another config, overrides or space."""
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    known = study.user_attrs.get("fingerprint")
    if known is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("identity", identity)
    elif known != fingerprint:
        had = study.user_attrs.get("identity") or {}
        changes = _identity_changes(had, identity)
        shown = "; ".join(changes[:5]) + (
            f"; and {len(changes) - 5} more" if len(changes) > 5 else ""
        )
        raise ValueError(
            f"study {study.study_name!r} was made from another config, overrides or space, and "
            f"this command differs in: {shown or 'its recorded identity'}. Run the study's own "
            "command again, or start another study (--study NAME or another --out folder)"
        )


def _identity_changes(had: dict, now: dict) -> list[str]:
    """What differs between two studies' identities, one phrase per key: config keys with both
    values, the overrides added and dropped, the space's dimensions."""
    from .config import flatten

    out = []
    a, b = flatten(had.get("config") or {}), flatten(now.get("config") or {})
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"config {key} {a.get(key, '(none)')!r} -> {b.get(key, '(none)')!r}")
    was, new = set(had.get("overrides") or []), set(now.get("overrides") or [])
    out += [f"override {o} dropped" for o in sorted(was - new)]
    out += [f"override {o} added" for o in sorted(new - was)]
    dims_a = {d.get("key"): d for d in had.get("space") or []}
    dims_b = {d.get("key"): d for d in now.get("space") or []}
    for key in sorted(set(dims_a) | set(dims_b), key=str):
        if dims_a.get(key) != dims_b.get(key):
            if key not in dims_a or key not in dims_b:
                out.append(f"space key {key} {'added' if key in dims_b else 'dropped'}")
            else:
                fields = [f for f in dims_b[key] if dims_a[key].get(f) != dims_b[key].get(f)]
                out.append(
                    "space "
                    + ", ".join(
                        f"{key}.{f} {dims_a[key].get(f)!r} -> {dims_b[key].get(f)!r}"
                        for f in fields
                    )
                )
    return out


def counted_before(study, number: int) -> int:
    """Complete or running trials numbered below ``number``: the trials ahead of it."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.RUNNING)
    return sum(t.number < number for t in study.get_trials(deepcopy=False, states=states))


def complete_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


# ------------------------------------------------------------------------------ one trial
try:  # loaded here, not in the child: a preexec function must not import or allocate much
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not Linux: children are stopped by the worker's own exit paths only
    _LIBC = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """The trainer gets SIGTERM when its worker dies (Linux), so no orphan keeps training."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def train_command(config: Path, overrides: list[str], run: Path, nproc: int) -> list[str]:
    """The ``wsol train`` command of a trial (``torchrun`` with ``nproc`` processes); resumes
    ``run`` when it holds a checkpoint (a retried trial)."""
    launcher = [sys.executable, "-m", "wsol.cli"]
    if nproc > 1:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "wsol.cli",
        ]  # fmt: skip
    if (run / "last.pt").is_file():
        return [*launcher, "train", "--resume", "--out", str(run), "--quiet"]
    return [*launcher, "train", str(config), *overrides, "--out", str(run), "--quiet"]


def val_scores(log_csv: Path, metric: str) -> list[tuple[int, float]]:
    """(epoch, val score) of every evaluated epoch of a run's log.csv so far; ``metric``
    ``auto``: MaxBoxAccV2, or PxAP where the run has no boxes."""
    import csv

    if not log_csv.is_file():
        return []
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        names = ["val_MaxBoxAccV2", "val_PxAP"] if metric == "auto" else [f"val_{metric}"]
        for name in names:
            value = row.get(name, "")
            if value not in ("", None) and math.isfinite(float(value)):
                out.append((int(row["epoch"]), float(value)))
                break
    return out


class TrialFailed(RuntimeError):
    """A trial's training exited with an error (its log says why)."""


@dataclass
class Sweep:
    """What every trial of one sweep shares."""

    config: Path
    overrides: list[str]
    space: list[Dimension]
    out: Path
    trials: int
    metric: str
    nproc: int = 1
    poll: float = 1.0

    def objective(self, trial) -> float:
        import optuna

        if counted_before(trial.study, trial.number) >= self.trials:
            trial.set_user_attr("note", "surplus")
            trial.study.stop()
            raise optuna.TrialPruned("the study already has its trials")
        values: dict = {}
        for d in self.space:  # in file order: an `at_most` key is drawn before its bound
            values[d.key] = d.suggest(trial, values)
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        with warnings.catch_warnings():  # "experimental" in Optuna 4.9 and 5
            warnings.simplefilter("ignore")
            history = _retry_callback().retry_history(frozen)
        origin = history[0] if history else trial.number
        run = self.out / "trials" / f"trial_{origin:04d}"
        trial.set_user_attr("run", str(run))
        if history:
            trial.set_user_attr("note", f"retry of trial {history[-1]}")
        overrides = [*self.overrides, *(override(k, v) for k, v in values.items())]
        log = self.out / "logs" / f"trial_{trial.number:04d}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = train_command(self.config, overrides, run, self.nproc)
        with open(log, "w") as sink:
            proc = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
            try:
                reported = self._follow(trial, proc, run)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise TrialFailed(f"trial {trial.number} failed: {tail[0]} (log: {log})")
        scores = val_scores(run / "log.csv", self.metric) or reported
        if not scores:
            raise TrialFailed(f"trial {trial.number}: {run}/log.csv has no val {self.metric}")
        return scores[-1][1]

    def _follow(self, trial, proc, run: Path) -> list[tuple[int, float]]:
        """Wait for the trainer, reporting each evaluated epoch (pruning if asked)."""
        import optuna

        seen: list[tuple[int, float]] = []
        while True:
            done = proc.poll() is not None
            scores = val_scores(run / "log.csv", self.metric)
            for epoch, value in scores[len(seen) :]:
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch} (val {value:.2f})")
            seen = scores
            if done:
                return seen
            try:  # wakes as soon as the trainer exits, not at the next poll
                proc.wait(timeout=self.poll)
            except subprocess.TimeoutExpired:
                pass


def run_sweep(
    config: str | Path,
    overrides: list[str],
    space: str | Path,
    trials: int,
    out: str | Path,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    sampler: str = "random",
    seed: int | None = None,
    nproc: int = 1,
    prune: bool = False,
    heartbeat: float = 60.0,
    lock_wait: float = SQLITE_WAIT_S,
    echo: bool = True,
) -> dict:
    """Run (or continue) a sweep until its study has ``trials`` complete trials; returns the
    paths of what it wrote (see the module's doc)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    if trials < 1:
        raise ValueError(f"--trials must be >= 1, not {trials}")
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, not {nproc}")
    if not heartbeat > 0:
        raise ValueError(f"--heartbeat must be > 0 seconds, not {heartbeat}")
    if not lock_wait > 0:
        raise ValueError(f"--lock-wait must be > 0 seconds, not {lock_wait}")
    config, out = Path(config).resolve(), Path(out)
    cfg = load_config(config, overrides)  # every key and value checked before any trial
    base_dict = yaml.safe_load(config.read_text()) or {}
    for key in ("root", "metadata", "masks"):  # the data of every trial, before the first
        value = getattr(cfg.data, key)
        if value and not Path(value).exists():
            raise FileNotFoundError(
                f"data.{key} {value} does not exist: every trial would fail on it (give it as "
                f"data.{key}=... after the config)"
            )
    dims = read_space(space, base_dict, overrides)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or out.resolve().name
    study = open_study(storage_url(out, storage), name, sampler, seed, prune, heartbeat, lock_wait)
    identity = {
        "config": yaml.safe_load(config.read_text()),
        "overrides": sorted(overrides),
        "space": [d.__dict__ | {"choices": list(d.choices)} for d in dims],
    }
    check_same_study(study, identity)
    sweep = Sweep(config, list(overrides), dims, out, trials, cfg.select_metric, nproc)
    failures: list[str] = []

    def after(study, trial) -> None:
        if echo:
            print(describe(study, trial, trials), flush=True)
        if trial.state == TrialState.FAIL:
            failures.append(trial.user_attrs.get("error", ""))
            if len(failures) >= 3 and all(failures[-3:]):
                study.stop()  # three failures in a row: a config problem, not bad luck
        elif trial.state == TrialState.COMPLETE:
            failures.clear()

    def objective(trial):
        try:
            return sweep.objective(trial)
        except TrialFailed as err:
            trial.set_user_attr("error", str(err))
            raise

    if complete_count(study) < trials:
        study.optimize(
            objective,
            callbacks=[MaxTrialsCallback(trials, states=(TrialState.COMPLETE,)), after],
            catch=(TrialFailed,),
            gc_after_trial=True,
        )
    if len(failures) >= 3:
        raise RuntimeError(f"three trials failed in a row; the last: {failures[-1]}")
    return write_outputs(study, out, config, list(overrides), dims, nproc)


def describe(study, trial, total: int) -> str:
    """One line on a finished trial: its state, score, values and the study's count."""
    values = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    done = complete_count(study)
    what = trial.state.name.lower()
    if trial.value is not None:
        what += f", val {trial.value:.2f}"
    if trial.user_attrs.get("error"):
        what += f": {trial.user_attrs['error']}"
    elif trial.user_attrs.get("note"):
        what += f" ({trial.user_attrs['note']})"
    return f"[sweep] trial {trial.number} {what} | {values} | {done}/{total} complete"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------ outputs
def write_outputs(
    study, out: Path, config: Path, overrides: list[str], dims, nproc: int = 1
) -> dict:
    """sweep.csv, best.yaml and the plots of a study (see the module's doc). best.yaml and
    best.json say how many processes each trial trained with (the global batch is ``nproc``
    times the config's ``batch_size``): train it the same way."""
    import pandas as pd
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {
            "trial": t.number,
            "state": t.state.name,
            "val_metric": t.value,
            **{d.key: t.params.get(d.key) for d in dims},
            "run": t.user_attrs.get("run", ""),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None,
            "note": t.user_attrs.get("error") or t.user_attrs.get("note", ""),
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "sweep.csv", index=False)
    written = {"csv": out / "sweep.csv", "plots": []}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return written
    best = max(complete, key=lambda t: t.value)
    chosen = [*overrides, *(override(k, v) for k, v in best.params.items())]
    best_cfg = load_config(config, chosen)
    save_config(best_cfg, out / "best.yaml")
    launch = f"torchrun --nproc_per_node={nproc} -m wsol.cli" if nproc > 1 else "wsol"
    note = (
        f"# chosen by a sweep whose trials trained with {nproc} process(es), a global batch of "
        f"{nproc * best_cfg.batch_size}: train it the same way ({launch} train best.yaml ...)\n"
    )
    (out / "best.yaml").write_text(note + (out / "best.yaml").read_text())
    (out / "best.json").write_text(
        json.dumps(
            {
                "trial": best.number,
                "val_metric": best.value,
                "params": best.params,
                "nproc": nproc,
                "global_batch": nproc * best_cfg.batch_size,
            },
            indent=1,
        )
    )
    written.update(best=out / "best.yaml", best_trial=best.number, best_value=best.value)
    written["plots"] = plot_trials(complete, dims, out / "plots")
    return written


def plot_trials(trials, dims, folder: Path) -> list[Path]:
    """One scatter plot per hyperparameter: the val metric of each complete trial against it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    best = max(trials, key=lambda t: t.value)
    for d in dims:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [t.params[d.key] for t in trials]
        ys = [t.value for t in trials]
        if d.kind == "categorical":
            labels = [str(c) for c in d.choices]
            xs = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, ys, color="tab:blue", label="trial")
        bx = best.params[d.key]
        bx = [str(c) for c in d.choices].index(str(bx)) if d.kind == "categorical" else bx
        ax.scatter([bx], [best.value], color="tab:red", marker="*", s=120, label="best")
        if d.log:
            ax.set_xscale("log")
        ax.set_xlabel(d.key)
        ax.set_ylabel("val metric")
        ax.set_title(f"{len(trials)} complete trials")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"{d.key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``0,4,7`` -> those seeds."""
    try:
        if "," in str(text):
            seeds = [int(s) for s in str(text).split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ValueError(f"--test-best takes a count (3) or seeds (0,1,2), not {text!r}") from None
    if not seeds:
        raise ValueError("--test-best needs at least one seed")
    return seeds


def evaluate_best(
    out: str | Path, seeds: list[int], nproc: int = 1, echo: bool = True
) -> list[Path]:
    """Train ``out/best.yaml`` once per seed (``out/best/seed_<s>``) and evaluate each on test
    (``.../eval_test``, labelled ``<method>-swept``, so that ``wsol compare`` keeps them apart
    from runs of the recipe's defaults); returns the evaluation folders."""
    from .evaluate import evaluate_checkpoint
    from .runtime import run_finished

    out = Path(out)
    best = out / "best.yaml"
    if not best.is_file():
        raise FileNotFoundError(f"{best} does not exist: the sweep has no complete trial yet")
    label = f"{load_config(best).method.method}-swept"
    evals = []
    for seed in seeds:
        run = out / "best" / f"seed_{seed}"
        if not run_finished(run):
            if echo:
                print(f"[sweep] training the chosen config with seed {seed} -> {run}", flush=True)
            command = train_command(best, [f"seed={seed}"], run, nproc)
            result = subprocess.run(command, preexec_fn=_die_with_parent)
            if result.returncode != 0:
                raise RuntimeError(f"training {run} failed (exit {result.returncode})")
        eval_dir = run / "eval_test"
        if not (eval_dir / "metrics.json").is_file():  # a row of its own in `wsol compare`
            evaluate_checkpoint(run, eval_dir, progress=False, echo=False, label=label)
        evals.append(eval_dir)
    if echo:
        print(f"[sweep] compare them: wsol compare {' '.join(str(e) for e in evals)} --out ...")
    return evals


__all__ = [
    "Dimension",
    "read_space",
    "run_sweep",
    "evaluate_best",
    "parse_seeds",
    "val_scores",
    "train_command",
]
