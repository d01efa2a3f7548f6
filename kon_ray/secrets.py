"""Keep secrets out of everything a run writes: config dumps, logs, MLflow params, reports.

kon_ray never needs a secret in its config (credentials come from the AWS chain and MLflow's own environment
variables), but people paste them anyway: a token in a tracking URI, a password in an override. Values of keys
that look like secrets, and the password part of URLs, are replaced by `***` wherever config is written out, and
a logging filter masks any such value that reaches a log line.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Set

MASK = "***"

# key names that hold secrets: password, passwd, secret, token, api_key, access_key, secret_key, private_key,
# credentials, auth — as a whole word of a dotted/underscored key, so `id_column` or `keys_total` do not match.
SECRET_KEY = re.compile(
    r"(^|[._-])(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|credentials?|auth)([._-]|$)",
    re.IGNORECASE,
)
# a command-line override, as Hydra records them (hydra.overrides.task): [+|++|~]key=value
OVERRIDE = re.compile(r"^(?:\+{1,2}|~)?(?P<key>[\w.\-/@]+)=(?P<value>.+)$")
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@", re.I)


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(str(key)))


def redact_text(text: str) -> str:
    return URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def redact(obj: Any, key: str = "") -> Any:
    """A copy of a plain config (dicts, lists, scalars) with secret values masked."""
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v, str(k))) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, key) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def secret_values(obj: Any) -> Set[str]:
    """Every secret value in a plain config (to mask them wherever they turn up, e.g. in a log line)."""
    found: Set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_key(k) and isinstance(v, (str, int)) and str(v):
                found.add(str(v))
            else:
                found |= secret_values(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found |= secret_values(v)
    elif isinstance(obj, str):
        found |= {m["password"] for m in URL_PASSWORD.finditer(obj)}
        override = OVERRIDE.match(obj)
        if override and is_secret_key(override["key"]):
            found.add(override["value"])
    return found


class RedactingFilter(logging.Filter):
    """Masks known secret values and URL passwords in every record that passes through a handler."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self.values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        for value in self.values:
            clean = clean.replace(value, MASK)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(plain_config: Any) -> None:
    """Attach the filter to every handler of the root logger (the terminal and the run's log file)."""
    log_filter = RedactingFilter(secret_values(plain_config))
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
