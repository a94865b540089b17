"""The entry points: a Config from YAML text or a file, or one ConfigError naming every mistake.

The passes run in order: YAML with lines (yamlsrc.py), defaults filled in (prefill.py),
pydantic's field checks (errors.py turns them into paths), then the semantic checks
(checks.py), over the parts that validated when some did not. Errors of every pass are
collected, located by YAML line and raised together, in file order.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from controller.config.checks import partial_semantic_checks, semantic_checks
from controller.config.errors import ConfigError, pydantic_errors
from controller.config.model import Config
from controller.config.prefill import prefill
from controller.config.yamlsrc import compose, line_of


def parse_config(text: str, source: str = "<string>") -> Config:
    """Config from YAML text; raises ConfigError listing every problem found."""
    data, lines = compose(text, source)
    if data is None:
        raise ConfigError(["empty config: at least site and links are required"], source)
    if not isinstance(data, dict):
        raise ConfigError(["the config must be a mapping of keys to values"], source, [1])
    data = prefill(data)

    errors: list[str] = []
    try:
        cfg: Config | None = Config.model_validate(data)
    except ValidationError as exc:
        cfg = None
        errors += pydantic_errors(exc, Config)

    if cfg is not None:
        sem_errors, warnings = semantic_checks(cfg)
    else:
        sem_errors, warnings = partial_semantic_checks(data)
    errors += sem_errors

    if errors:
        unique = list(dict.fromkeys(errors))
        located = [(line_of(e.split(": ", 1)[0], lines), e) for e in unique]
        # File order reads best; the sort is stable, so errors of one line keep their order.
        located.sort(key=lambda le: le[0] if le[0] is not None else 0)
        raise ConfigError([e for _, e in located], source, [line for line, _ in located])
    assert cfg is not None
    cfg._warnings = warnings
    return cfg


def load_config(path: str | Path) -> Config:
    """Config from a YAML file; unreadable files raise ConfigError like bad content does."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text (byte {exc.start})"], source) from None
    return parse_config(text, source)
