"""Is the Snowflake endpoint of the prod target reachable? Asked before dbt starts.

The Snowflake connector retries an unreachable host for about 75 seconds before it fails with
`250001: Could not connect to Snowflake backend after 11 attempt(s)`. A TCP connect to the same
host and port answers in milliseconds (refused, no such name) or `CONNECT_TIMEOUT_S` at most
(dropped), so `check_snowflake_reachable` fails fast with one line that says which variables
point where, and what to do: start the emulator, or stop pointing at a stopped one.

The endpoint is the one the profile gives the connector: `SNOWFLAKE_HOST` and `SNOWFLAKE_PORT`
when set (an emulator such as fakesnow, or a private-link host), else
`<SNOWFLAKE_ACCOUNT>.snowflakecomputing.com:443`. When an HTTP(S) proxy applies to that host the
connector goes through the proxy, and the check is skipped: a direct connect proves nothing there.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping

from mesh.core.errors import ConfigError
from mesh.core.surface import hint

CONNECT_TIMEOUT_S = 5.0
DEFAULT_PORT = 443
# Endpoints a connect succeeded to in this process: each dbt call re-checks its environment.
_REACHED: set[tuple[str, int]] = set()


class UnreachableError(ConfigError):
    """The Snowflake host and port the prod target would use do not accept connections."""


def snowflake_endpoint(env: Mapping[str, str]) -> tuple[str, int, str] | None:
    """(host, port, where they come from) the prod profile connects to, or None without an account."""
    host = env.get("SNOWFLAKE_HOST", "").strip()
    port_text = env.get("SNOWFLAKE_PORT", "").strip()
    if host:
        source = "SNOWFLAKE_HOST" + (", SNOWFLAKE_PORT" if port_text else "")
    else:
        account = env.get("SNOWFLAKE_ACCOUNT", "").strip()
        if not account:
            return None
        # As the connector builds it without a region (snowflake.connector.util_text).
        parts = account.split(".")
        domain = "cn" if len(parts) > 1 and parts[1].lower().startswith("cn-") else "com"
        host, source = f"{account}.snowflakecomputing.{domain}", "SNOWFLAKE_ACCOUNT"
        if port_text:
            source += ", SNOWFLAKE_PORT"
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"SNOWFLAKE_PORT must be a port number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"SNOWFLAKE_PORT must be a port number, got {port_text!r}")
    return host, port, source


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proxied(host: str, env: Mapping[str, str]) -> bool:
    """Whether the connector would reach `host` through an HTTP(S) proxy from `env` (the
    usual `HTTPS_PROXY` / `NO_PROXY` rules, either case)."""
    names = {k.lower(): v.strip() for k, v in env.items() if k.lower().endswith("_proxy")}
    if not any(names.get(k) for k in ("https_proxy", "http_proxy", "all_proxy")):
        return False
    for entry in names.get("no_proxy", "").split(","):
        entry = entry.strip().lower().lstrip(".").split(":")[0]
        if entry == "*" or (entry and (host.lower() == entry or host.lower().endswith("." + entry))):
            return False
    return True


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "no such host name"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer in {CONNECT_TIMEOUT_S:g} s"
    return exc.strerror or type(exc).__name__


def check_snowflake_reachable(
    env: Mapping[str, str] | None = None, timeout: float = CONNECT_TIMEOUT_S
) -> None:
    """Raise UnreachableError (exit 2, one line) when nothing accepts a TCP connection at the
    Snowflake endpoint of `env` (default: this process's environment)."""
    env = os.environ if env is None else env
    endpoint = snowflake_endpoint(env)
    if endpoint is None:
        return
    host, port, source = endpoint
    if (host, port) in _REACHED or _proxied(host, env):
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        where = f"cannot reach Snowflake at {host}:{port} (from {source}): {_reason(exc)}"
        if is_loopback(host):
            raise UnreachableError(
                f"{where}; no emulator listens there: start one with {hint('emulate.up')} and run "
                f"through {hint('emulate.run', '--', '...')}, or, in a shell that sourced "
                ".mesh/emulate.env, run `mesh_emulate_off` to drop its settings"
            ) from exc
        raise UnreachableError(
            f"{where}; check the account identifier (e.g. myorg-myaccount), SNOWFLAKE_HOST and "
            "SNOWFLAKE_PORT, and the network"
        ) from exc
    _REACHED.add((host, port))
